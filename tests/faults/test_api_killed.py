"""The API process (`python -m api`, local executor, PostgreSQL + Redis) killed with
SIGKILL while 20 SSE followers watch three live runs, then started again on its port.

The runners outlive it (each is its own session) and the new process adopts them from
their pid files: exactly one runner plays each run, start to end. Every follower
reconnects with its Last-Event-ID and ends with the `result`, holding exactly the run's
full history; every step is decided once and the ledger is whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.store import open_store
from tests.apiserver import JWT_SECRET, token, wait_for
from tests.faults.test_dev_server_killed import runner_pids
from tests.faults.test_redis_down import follow_with_resume
from tests.integration.test_api_runs import create, create_model, intraday, sse_events
from tests.integration.test_runner_process import assert_played_once
from tests.servers import Redis, free_port

pytestmark = pytest.mark.timeout(180)
RUNS = 3
FOLLOWERS = 20


class ApiProcess:
    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self.ready, timeout=60, interval=0.2)

    def ready(self) -> bool:
        assert self.proc.poll() is None, "the API process exited"
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
def apis() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for api in started:
        if api.proc.poll() is None:
            api.proc.send_signal(signal.SIGTERM)
            try:
                api.proc.wait(30)
            except subprocess.TimeoutExpired:
                api.proc.kill()


def test_followers_and_runners_survive_a_killed_api(
        postgres_url: str, redis_server: Redis, tmp_path: Path,
        apis: list[ApiProcess]) -> None:
    port = free_port()
    prefix = f"t{uuid.uuid4().hex[:10]}"

    def pids_of(run_id: int) -> list[int]:  # runners inherit TICKRUN_LOCAL_LOG_DIR
        return runner_pids(run_id, tmp_path)

    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")}
    env.update(TICKRUN_DATABASE_URL=postgres_url, TICKRUN_REDIS_URL=redis_server.url(),
               TICKRUN_REDIS_KEY_PREFIX=prefix,
               TICKRUN_EXECUTOR="local", TICKRUN_JWT_SECRET=JWT_SECRET,
               TICKRUN_LOCAL_LOG_DIR=str(tmp_path / "runner-logs"),
               TICKRUN_PER_USER_LIMIT=str(RUNS), TICKRUN_GLOBAL_LIMIT=str(RUNS),
               TICKRUN_LOST_GRACE_SECONDS="1", TICKRUN_RESYNC_SECONDS="1",
               TICKRUN_SSE_HEARTBEAT_SECONDS="2", TICKRUN_SSE_END_CHECK_SECONDS="0.5",
               TICKRUN_RUNNER_STEP_DELAY_SECONDS="0.05")  # 390 steps: ~20 s
    apis.append(ApiProcess(port, env, tmp_path / "api.log"))
    headers = {"Authorization": f"Bearer {token('user-a')}"}
    with httpx.Client(base_url=apis[0].url, headers=headers, timeout=30) as c:
        model = create_model(c)
        runs = [create(c, intraday(model))["id"] for _ in range(RUNS)]

    deadline = time.monotonic() + 120
    followed = [runs[i % RUNS] for i in range(FOLLOWERS)]
    seen: list[list[str]] = [[] for _ in range(FOLLOWERS)]
    errors: list[BaseException] = []

    def follow(i: int) -> None:
        try:
            with httpx.Client(base_url=apis[0].url, headers=headers,
                              timeout=httpx.Timeout(10, read=10)) as own:
                follow_with_resume(own, followed[i], deadline, seen[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(FOLLOWERS)]
    for t in threads:
        t.start()
    wait_for(lambda: all(len(ids) >= 30 for ids in seen), timeout=60, interval=0.2)
    players = {r: pids_of(r) for r in runs}
    assert all(len(p) == 1 for p in players.values()), players

    apis[0].proc.send_signal(signal.SIGKILL)
    apis[0].proc.wait(10)
    assert {r: pids_of(r) for r in runs} == players, "the runners outlive their API"
    at_kill = [len(ids) for ids in seen]
    apis.append(ApiProcess(port, env, tmp_path / "api.log"))

    original = {pid for pids in players.values() for pid in pids}
    playing: set[int] = set()

    def all_followers_done() -> bool:
        playing.update(pid for r in runs for pid in pids_of(r))
        return not any(t.is_alive() for t in threads)
    wait_for(all_followers_done, timeout=max(1.0, deadline - time.monotonic()), interval=0.2)
    assert errors == [], errors
    assert playing == original, f"a second runner played: {playing - original}"

    with httpx.Client(base_url=apis[1].url, headers=headers, timeout=30) as c:
        history = {}
        for run_id in runs:
            run = c.get(f"/v1/runs/{run_id}").json()
            assert run["status"] == "completed" and run["attempts"] == 1, run
            history[run_id] = [e[0] for e in sse_events(c, run_id)]
            assert len(history[run_id]) == len(set(history[run_id])) > 390
    for i, ids in enumerate(seen):
        assert at_kill[i] < len(ids), f"follower {i} got nothing after the kill"
        assert ids == history[followed[i]], f"follower {i} of run {followed[i]} differs"

    store = open_store(postgres_url, pool_size=1)
    try:
        assert_played_once(store, runs)
    finally:
        store.close()
    print(f"api killed: {RUNS} runs, {FOLLOWERS} followers, "
          f"{sum(len(h) for h in history.values())} events, "
          f"{sum(len(store_ids) for store_ids in seen)} delivered")
