"""The embedded default's server killed with SIGKILL mid-run and started again.

Its runner outlives it (a runner is its own session). The new server adopts that
runner instead of starting a second one: the run ends with one attempt, every step
decided once, the ledger consistent, and the new server sees the run to its end.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.status import RunStatus
from core.store import open_store
from tests.apiserver import wait_for
from tests.e2e.test_cli import TICKRUN, clean_env
from tests.integration.test_runner_process import assert_ledger_consistent
from tests.servers import free_port

pytestmark = pytest.mark.timeout(300)


class DevServer:
    def __init__(self, cwd: Path, port: int, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([*TICKRUN, "dev", "--port", str(port)], cwd=cwd, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self.ready, timeout=60)
        token = (cwd / ".tickrun" / "dev-token").read_text().strip()
        self.client = httpx.Client(base_url=self.url, timeout=30,
                                   headers={"Authorization": f"Bearer {token}"})

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
        try:
            return httpx.get(f"{self.url}/readyz").status_code == 200
        except httpx.TransportError:
            return False


def runner_pids(run_id: int, data_dir: Path) -> list[int]:
    """Live `python -m runner --run-id N` processes of this test's database, read from
    /proc (not from a server; other tests' runs may have the same id)."""
    pids = []
    mine = str(data_dir).encode()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes() if b"runner" in argv else b""
        except (OSError, IndexError):
            continue
        if b"runner" in argv and b"--run-id" in argv and str(run_id).encode() in argv \
                and state != "Z" and mine in environ:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[DevServer]]:
    started: list[DevServer] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGINT)
            server.proc.wait(30)


def test_a_killed_server_leaves_exactly_one_runner_playing(
        tmp_path: Path, servers: list[DevServer]) -> None:
    port = free_port()
    env = clean_env(TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.15",
                    TICKRUN_LOST_GRACE_SECONDS="1")
    servers.append(DevServer(tmp_path, port, env))
    c = servers[0].client
    model = c.post("/v1/models", json={"signature": "killed"}).json()["id"]
    run = c.post("/v1/runs", json={
        "model_id": model, "mode": "daily", "symbols": ["MSFT"], "start": "2024-01-02",
        "end": "2024-04-30", "decider": "sma_crossover", "data": "synthetic",
        "decider_params": {"fast": 3, "slow": 8}}).json()
    wait_for(lambda: c.get(f"/v1/runs/{run['id']}").json()["progress"]["step"] >= 10, 60)
    (runner,) = runner_pids(run["id"], tmp_path)
    os.kill(servers[0].proc.pid, signal.SIGKILL)
    servers[0].proc.wait(10)
    assert runner_pids(run["id"], tmp_path) == [runner], "the runner outlives its server"

    servers.append(DevServer(tmp_path, port, env))
    c = servers[1].client
    seen: set[int] = set()

    def finished() -> bool:
        seen.update(runner_pids(run["id"], tmp_path))
        return c.get(f"/v1/runs/{run['id']}").json()["status"] in ("completed", "failed")
    wait_for(finished, timeout=120, interval=0.2)
    assert seen <= {runner}, f"a second runner played the run: {seen - {runner}}"
    store = open_store(f"sqlite:///{tmp_path / '.tickrun' / 'tickrun.db'}")
    try:
        done = store.get_run(run["id"])
        assert done.status is RunStatus.COMPLETED and done.attempts == 1
        decisions = store.list_decisions(run["id"], limit=1000)
        assert [d.step for d in decisions] == list(range(done.steps_total))
        assert_ledger_consistent(store, run["id"], done.spec.initial_cash)
    finally:
        store.close()
