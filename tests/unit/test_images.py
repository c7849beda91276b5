"""The Dockerfiles: hadolint-clean, multi-stage, non-root, no HEALTHCHECK (Kubernetes
probes), dependencies at the pinned versions of constraints.txt, which matches the venv
the tests run in (scripts/constraints.py regenerates it); the runner's image holds no
package of pyproject's api extra (the API, controller and CLI)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "Dockerfile.api", ROOT / "Dockerfile.runner"]
HADOLINT = Path(sys.executable).parent / "hadolint"
# What only the API, the controller and the CLI import: pyproject's api extra, never in the
# runner's image; nor pyarrow (fastparquet reads the runner's Parquet files).
API_ONLY = {"fastapi", "starlette", "uvicorn", "sse-starlette", "pyjwt", "cryptography",
            "httpx-sse", "typer", "rich", "kubernetes", "croniter"}
# The official MCP SDK (outside tools, a runner feature) requires its own server side:
# these come into the runner's image with it, and only with it (never imported there).
WITH_MCP = {"starlette", "uvicorn", "sse-starlette", "pyjwt", "cryptography", "httpx-sse"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(path: Path) -> None:
    out = subprocess.run([str(HADOLINT), str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_is_multi_stage_non_root_and_pinned(path: Path) -> None:
    text = path.read_text()
    stages = re.findall(r"^FROM\s", text, re.M)
    assert len(stages) >= 2, "a build stage and a final stage"
    final = text[[m.start() for m in re.finditer(r"^FROM\s", text, re.M)][-1]:]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "HEALTHCHECK" not in text  # Kubernetes probes the API; the runner is a Job
    assert "-c constraints.txt" in text and "COPY pyproject.toml constraints.txt" in text
    # The final stage only copies what the build stage made: no pip, no compilers.
    assert "pip install" not in final and "COPY --from=builder /opt/pip" not in final
    assert not re.search(r"\b(apt-get|gcc|build-essential)\b", final)


def test_constraints_pin_what_the_tests_run_with() -> None:
    pinned = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text()
                  .splitlines() if line and not line.startswith("#"))
    from importlib import metadata
    stale = {name: (version, metadata.version(name)) for name, version in pinned.items()
             if metadata.version(name) != version}
    assert not stale, f"constraints.txt differs from the venv: {stale}; run " \
                      "`.venv/bin/python scripts/constraints.py`"
    for must in ("fastapi", "uvicorn", "psycopg", "redis", "kubernetes", "langchain-openai",
                 "prometheus-client", "pydantic"):
        assert must in pinned, must


def _constraints_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("constraints", ROOT / "scripts/constraints.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_runner_image_installs_no_api_only_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    script = _constraints_script()
    # The runner's image installs [project].dependencies and what they require.
    runner = set(script.closure(project["dependencies"]))
    leaked = runner & (API_ONLY | {"pyarrow"}) - WITH_MCP
    assert not leaked, leaked
    without_mcp = set(script.closure([d for d in project["dependencies"]
                                      if not d.startswith(("mcp", "langchain-mcp"))]))
    assert not without_mcp & API_ONLY, without_mcp & API_ONLY
    assert {"pandas", "fastparquet", "psycopg", "langchain-openai"} <= runner
    api = set(script.closure(project["dependencies"] + project["optional-dependencies"]["api"]))
    assert api >= API_ONLY, API_ONLY - api
    text = (ROOT / "Dockerfile.runner").read_text()
    assert "['project']['dependencies']" in text and "optional-dependencies" not in text
    assert not re.search(r"^COPY (api|controller|bench)/", text, re.M)
    assert re.search(r"^COPY runner/", text, re.M) and re.search(r"^COPY core/", text, re.M)
    # The API and controller's image: the runtime dependencies and the api extra.
    assert "p['dependencies'] + p['optional-dependencies']['api']" in \
        (ROOT / "Dockerfile.api").read_text()
