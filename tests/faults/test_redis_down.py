"""Redis down for 30 s while runs play and followers watch, on PostgreSQL.

The test's own redis-server is frozen with SIGSTOP and thawed with SIGCONT: down (no
answer, connections hang) but its data kept, the harshest form for clients, since
nothing refuses a connection and only timeouts can tell. The runs go on (the database is
the record) and complete; every step is decided once and the ledger is whole. Each
follower reconnects with Last-Event-ID whenever its stream ends or goes quiet, and in
the end holds every event of the run's history exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from core.store import open_store
from tests.apiserver import Backend, running_api, wait_for, wait_status
from tests.integration.test_api_runs import create, create_model, intraday, sse_events
from tests.integration.test_runner_process import assert_played_once
from tests.servers import Redis, start_redis

pytestmark = pytest.mark.timeout(150)
RUNS = 3
OUTAGE_SECONDS = 30.0
# 390 steps at 0.1 s: ~40 s, so the runs outlive the outage and deliver what they buffered.
STEP_DELAY = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.1"}


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    server = start_redis()
    yield server
    os.kill(server.process.pid, signal.SIGCONT)  # never leave it frozen
    server.stop()


def follow_with_resume(client: httpx.Client, run_id: int, deadline: float,
                       ids: list[str] | None = None,
                       connects: list[int] | None = None) -> list[str]:
    """Every event id up to the `result` (appended to `ids` as they come), reconnecting
    with Last-Event-ID as a browser's EventSource does whenever the stream breaks or
    stays silent too long (or the server is not there)."""
    ids = [] if ids is None else ids
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": ids[-1]} if ids else {}
        if connects is not None:
            connects.append(len(ids))
        try:
            with connect_sse(client, "GET", f"/v1/runs/{run_id}/events",
                             headers=headers) as source:
                if source.response.status_code != 200:
                    time.sleep(0.5)
                    continue
                for sse in source.iter_sse():
                    if not sse.data:
                        continue
                    ids.append(sse.id)
                    if sse.event == "result":
                        return ids
                    json.loads(sse.data)
        except httpx.HTTPError:
            time.sleep(0.5)
    raise AssertionError(f"run {run_id}: no result before the deadline ({len(ids)} events)")


def test_runs_complete_and_followers_resume_exactly_after_redis_was_down(
        postgres_url: str, own_redis: Redis, tmp_path: Path) -> None:
    backend = Backend(postgres_url, own_redis.url(), f"t{uuid.uuid4().hex[:10]}",
                      tmp_path / "runner-logs")
    with running_api(backend, per_user=RUNS, runner_env=STEP_DELAY) as api, \
            api.client() as c:
        model = create_model(c)
        runs = [create(c, intraday(model))["id"] for _ in range(RUNS)]
        seen: dict[int, list[str]] = {}
        connects: dict[int, list[int]] = {}
        errors: list[BaseException] = []
        deadline = time.monotonic() + 120

        def follow(run_id: int) -> None:
            try:
                # Read timeout 5 s: a frozen stream is dropped and resumed, as a client would.
                with httpx.Client(base_url=api.url, headers=c.headers,
                                  timeout=httpx.Timeout(30, read=5)) as own:
                    seen[run_id] = follow_with_resume(own, run_id, deadline,
                                                      connects=connects.setdefault(run_id, []))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=follow, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        wait_for(lambda: all(c.get(f"/v1/runs/{r}").json()["progress"]["step"] >= 20
                             for r in runs), timeout=60, interval=0.3)
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            # The API still answers while Redis is down (the live progress is optional).
            for run_id in runs:
                asked = time.monotonic()
                r = c.get(f"/v1/runs/{run_id}")
                assert r.status_code == 200 and r.json()["status"] == "running"
                assert time.monotonic() - asked < 4.0, "a run's status hung on a frozen Redis"
            # The runs go on while Redis is down: the database (steps_done) moves.
            store = open_store(postgres_url, pool_size=1)
            try:
                before = {r: store.get_run(r).steps_done for r in runs}
                wait_for(lambda: all(store.get_run(r).steps_done >= before[r] + 20
                                     for r in runs), timeout=OUTAGE_SECONDS - 5, interval=0.5)
            finally:
                store.close()
            time.sleep(max(0.0, frozen_at + OUTAGE_SECONDS - time.monotonic()))
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)

        for t in threads:
            t.join(max(1.0, deadline - time.monotonic()))
        assert errors == [], errors
        for run_id in runs:
            wait_status(c, run_id, {"completed"}, timeout=60)
            history = [e[0] for e in sse_events(c, run_id)]
            assert len(history) == len(set(history)) and len(history) > 390
            assert seen[run_id] == history, f"run {run_id}: the follower's events differ"
            print(f"run {run_id}: {len(history)} events, follower (re)connected after "
                  f"{connects[run_id]} events")

    store = open_store(postgres_url, pool_size=1)
    try:
        assert_played_once(store, runs)
    finally:
        store.close()
