"""The Dockerfiles: hadolint-clean, multi-stage, non-root, no HEALTHCHECK (Kubernetes
probes), dependencies at the pinned versions of constraints.txt, which matches the venv
the tests run in (scripts/constraints.py regenerates it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "Dockerfile.api", ROOT / "Dockerfile.runner"]
HADOLINT = Path(sys.executable).parent / "hadolint"


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
