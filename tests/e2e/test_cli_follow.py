"""Following a run from the CLI for as long as a person does: past the stream's keep-alive
(every 15 s), and across connections dropped in the middle of the run, both at once on
one run as two users of it would."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apiserver import wait_for
from tests.e2e.test_cli import TICKRUN, running_dev_server, tickrun
from tests.tcpproxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.timeout(300)
DAY = ["--symbol", "AAPL", "--date", "2025-06-02", "--decider", "sma_crossover",
       "--data", "synthetic"]


def raw_stream(api_url: str, token: str, run_id: int) -> list[str]:
    """Every line the API sends on the run's stream, comments included, to the result."""
    with httpx.stream("GET", f"{api_url}/v1/runs/{run_id}/events",
                      headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(10, read=60)) as response:
        return list(response.iter_lines())


def test_follow_outlasts_the_keep_alive_and_events_survive_dropped_connections(
        tmp_path: Path) -> None:
    # 390 steps at 60 ms: the run lasts longer than the 15 s between keep-alives.
    with running_dev_server(tmp_path, TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.06") as env:
        model = tickrun("models", "create", "follower", "--json", cwd=tmp_path, env=env)["id"]
        follower = subprocess.Popen([*TICKRUN, "runs", "create", "--model", str(model), *DAY,
                                     "--follow", "--json"], cwd=tmp_path, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        token = (tmp_path / ".tickrun" / "dev-token").read_text().strip()
        run_id = wait_for(lambda: [r["id"] for r in httpx.get(
            f"{env['TICKRUN_API_URL']}/v1/runs", headers={"Authorization": f"Bearer {token}"}
        ).json()["items"]], 30)[0]
        lines: list[str] = []  # the live stream as it comes, keep-alives included
        raw = threading.Thread(target=lambda: lines.extend(
            raw_stream(env["TICKRUN_API_URL"], token, run_id)), daemon=True)
        raw.start()
        port = int(env["TICKRUN_API_URL"].rsplit(":", 1)[1])
        with tcp_proxy(port) as proxy:
            seen = _events_through_drops(proxy, run_id, tmp_path, env)
        stdout, stderr = follower.communicate(timeout=120)
        raw.join(60)
        whole = [json.loads(line) for line in tickrun_lines(
            "runs", "events", str(run_id), cwd=tmp_path, env=env)]

    # The follower lived through a keep-alive (the same stream showed one) and ended well.
    assert [line for line in lines if line.startswith(":")], "no keep-alive: too short"
    assert follower.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    run = json.loads(stdout.strip().splitlines()[-1])
    assert run["id"] == run_id and run["status"] == "completed"
    assert run["progress"]["step"] == run["progress"]["total"] == 390
    # The dropped reader got each event once, all of them, to the result.
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert ids == [e["id"] for e in whole], "an event was missed"
    assert seen[-1]["type"] == "result" and seen[-1]["data"]["status"] == "completed"


def _events_through_drops(proxy: TcpProxy, run_id: int, cwd: Path, env: dict[str, str]
                          ) -> list[dict[str, Any]]:
    """`tickrun runs events` through the proxy, cut twice while the run is live."""
    with open(cwd / "events.err", "w") as errors:  # one reader per pipe: stdout is read
        cli = subprocess.Popen([*TICKRUN, "runs", "events", str(run_id)], cwd=cwd,
                               env={**env, "TICKRUN_API_URL": proxy.url},
                               stdout=subprocess.PIPE, stderr=errors, text=True)
    seen: list[dict[str, Any]] = []

    def read() -> None:
        assert cli.stdout is not None
        for line in cli.stdout:
            seen.append(json.loads(line))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for count in (40, 300):
        wait_for(lambda count=count: len(seen) >= count, 60)
        assert proxy.cut() == 1
    cli.wait(120)
    reader.join(10)
    assert cli.returncode == 0, (cwd / "events.err").read_text()[-3000:]
    assert proxy.connections >= 3
    return seen


def tickrun_lines(*args: str, cwd: Path, env: dict[str, str]) -> list[str]:
    done = subprocess.run([*TICKRUN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()
