"""Following a run from the CLI for as long as a person does: past the stream's keep-alive,
and across a connection dropped in the middle of the run."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apiserver import wait_for
from tests.e2e.test_cli import TICKRUN, running_dev_server, tickrun
from tests.tcpproxy import tcp_proxy

pytestmark = pytest.mark.timeout(300)
DAY = ["--symbol", "AAPL", "--date", "2025-06-02", "--decider", "sma_crossover",
       "--data", "synthetic"]


def raw_stream(api_url: str, token: str, run_id: int) -> list[str]:
    """Every line the API sends on the run's stream, comments included, to the result."""
    lines: list[str] = []
    with httpx.stream("GET", f"{api_url}/v1/runs/{run_id}/events",
                      headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(10, read=60)) as response:
        for line in response.iter_lines():
            lines.append(line)
    return lines


def model_id(cwd: Path, env: dict[str, str]) -> int:
    return int(tickrun("models", "create", "follower", "--json", cwd=cwd, env=env)["id"])


def test_follow_outlasts_the_keep_alive(tmp_path: Path) -> None:
    # 390 steps at 60 ms: the run lasts longer than the 15 s between keep-alives.
    with running_dev_server(tmp_path, TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.06") as env:
        model = model_id(tmp_path, env)
        cli = subprocess.Popen([*TICKRUN, "runs", "create", "--model", str(model), *DAY,
                                "--follow", "--json"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        token = (tmp_path / ".tickrun" / "dev-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        run_id = wait_for(lambda: [r["id"] for r in httpx.get(
            f"{env['TICKRUN_API_URL']}/v1/runs", headers=auth).json()["items"]], 30)[0]
        lines = raw_stream(env["TICKRUN_API_URL"], token, run_id)
        stdout, stderr = cli.communicate(timeout=240)
    assert cli.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    pings = [line for line in lines if line.startswith(":")]
    assert pings, "the run ended before the first keep-alive: the test proves nothing"
    run = json.loads(stdout.strip().splitlines()[-1])
    assert run["id"] == run_id and run["status"] == "completed"
    assert run["progress"]["step"] == run["progress"]["total"] == 390


def test_events_resume_after_the_connection_drops(tmp_path: Path) -> None:
    with running_dev_server(tmp_path, TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.03") as env:
        model = model_id(tmp_path, env)
        run = tickrun("runs", "create", "--model", str(model), *DAY, "--json",
                      cwd=tmp_path, env=env)
        port = int(env["TICKRUN_API_URL"].rsplit(":", 1)[1])
        with tcp_proxy(port) as proxy:
            seen, cli, reader = _events_via(proxy.url, run["id"], tmp_path, env)
            for count in (40, 200):  # two drops while the run is live
                wait_for(lambda count=count: len(seen) >= count, 60)
                assert proxy.cut() == 1
            cli.wait(120)
            reader.join(10)
            assert cli.returncode == 0, (tmp_path / "events.err").read_text()[-3000:]
            assert proxy.connections >= 3
        whole = [json.loads(line) for line in tickrun_lines(
            "runs", "events", str(run["id"]), cwd=tmp_path, env=env)]
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert [e["id"] for e in seen] == [e["id"] for e in whole], "an event was missed"
    assert seen[-1]["type"] == "result" and seen[-1]["data"]["status"] == "completed"
    steps = [e["data"]["step"] for e in seen if e["type"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == 390


def _events_via(api_url: str, run_id: int, cwd: Path, env: dict[str, str]
                ) -> tuple[list[dict[str, Any]], subprocess.Popen[str], threading.Thread]:
    """`tickrun runs events` through `api_url`; its lines are parsed as they come."""
    with open(cwd / "events.err", "w") as errors:  # one reader per pipe: stdout is read
        cli = subprocess.Popen([*TICKRUN, "runs", "events", str(run_id)], cwd=cwd,
                               env={**env, "TICKRUN_API_URL": api_url},
                               stdout=subprocess.PIPE, stderr=errors, text=True)
    seen: list[dict[str, Any]] = []

    def read() -> None:
        assert cli.stdout is not None
        for line in cli.stdout:
            seen.append(json.loads(line))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return seen, cli, reader


def tickrun_lines(*args: str, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    done = subprocess.run([*TICKRUN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return iter(done.stdout.splitlines())
