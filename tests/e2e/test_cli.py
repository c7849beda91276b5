"""The `tickrun` command as a user runs it: demo, and dev with the runs/models commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apiserver import wait_for
from tests.servers import free_port

pytestmark = pytest.mark.timeout(300)
TICKRUN = [sys.executable, "-m", "api.cli"]
REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def tickrun(*args: str, cwd: Path, env: dict[str, str]) -> Any:
    done = subprocess.run([*TICKRUN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_demo_json_prints_the_finished_run(tmp_path: Path) -> None:
    run = tickrun("demo", "--json", cwd=tmp_path, env=clean_env())
    assert run["status"] == "completed"
    assert run["progress"]["step"] == run["progress"]["total"] > 200
    assert run["result"]["final_equity"] and run["result"]["benchmark"]
    assert (tmp_path / ".tickrun" / "tickrun.db").exists()
    assert oct((tmp_path / ".tickrun" / "dev-token").stat().st_mode & 0o777) == "0o600"


@contextmanager
def running_dev_server(cwd: Path, **env_extra: str) -> Iterator[dict[str, str]]:
    """`tickrun dev` on a free port; yields the environment a CLI call needs to reach it
    (its runners inherit `env_extra`)."""
    port = free_port()
    env = clean_env(TICKRUN_API_URL=f"http://127.0.0.1:{port}", **env_extra)
    proc = subprocess.Popen([*TICKRUN, "dev", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        try:
            return httpx.get(f"{env['TICKRUN_API_URL']}/readyz").status_code == 200
        except httpx.TransportError:
            return False
    try:
        wait_for(up, timeout=60)
        yield env
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_dev_server(tmp_path) as env:
        yield env


def test_dev_and_the_runs_commands(dev_server: dict[str, str], tmp_path: Path) -> None:
    model = tickrun("models", "create", "cli-model", "--params", '{"k": 1}', "--json",
                    cwd=tmp_path, env=dev_server)
    assert model["parameters"] == {"k": 1}
    run = tickrun("runs", "create", "--model", str(model["id"]), "--symbol", "msft",
                  "--start", "2024-01-02", "--end", "2024-03-28", "--decider", "buy_and_hold",
                  "--data", "synthetic", "--follow", "--json", cwd=tmp_path, env=dev_server)
    assert run["status"] == "completed" and run["spec"]["symbols"] == ["MSFT"]
    listed = tickrun("runs", "ls", "--json", cwd=tmp_path, env=dev_server)
    assert [r["id"] for r in listed["items"]] == [run["id"]]
    again = tickrun("runs", "follow", str(run["id"]), "--json", cwd=tmp_path, env=dev_server)
    assert again["result"] == run["result"]
    stopped = tickrun("runs", "stop", "--all", "--json", cwd=tmp_path, env=dev_server)
    assert stopped == {"stopping": []}
    bad = subprocess.run([*TICKRUN, "runs", "get", "999"], cwd=tmp_path, env=dev_server,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "404" in bad.stderr
    # Without the dev token nobody gets in.
    anonymous = httpx.get(f"{dev_server['TICKRUN_API_URL']}/v1/runs")
    assert anonymous.status_code == 401
