"""PostgreSQL restarted mid-run, with several runs live and the API under requests.

While the database is down the API answers 503 problem+json (never 500) and the
runners wait; when it is back every run plays to its end: each step decided once, no
trade lost or doubled, every event a follower got is in the history.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import open_store
from tests.apiserver import Backend, running_api, wait_for, wait_status
from tests.integration.test_api_runs import create, create_model, intraday, sse_events
from tests.integration.test_runner_process import assert_played_once
from tests.servers import Postgres, Redis, start_postgres

pytestmark = pytest.mark.timeout(300)
RUNS = 3


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A server of this test's own: it is shut down and started again."""
    pg = start_postgres()
    yield pg
    pg.stop()


def test_a_database_restart_loses_nothing(own_postgres: Postgres, redis_server: Redis,
                                          tmp_path: Path) -> None:
    url = own_postgres.url()
    setup = open_store(url, pool_size=1)
    setup.migrate()
    setup.close()
    backend = Backend(url, redis_server.url(), f"t{uuid.uuid4().hex[:8]}", tmp_path / "logs")
    slow = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.04"}
    with running_api(backend, per_user=RUNS, runner_env=slow) as api, api.client() as c:
        model = create_model(c)
        runs = [create(c, intraday(model))["id"] for _ in range(RUNS)]
        for run_id in runs:
            wait_for(lambda r=run_id: c.get(f"/v1/runs/{r}").json()["progress"]["step"] >= 20,
                     60)
        answers: Counter[int] = Counter()
        bad: list[str] = []
        down = threading.Event()

        def hammer() -> None:  # the API under requests while the database is away
            with api.client() as own:
                while not down.is_set():
                    for r in (own.get(f"/v1/runs/{runs[0]}"), own.get("/v1/runs?limit=5")):
                        answers[r.status_code] += 1
                        if r.status_code >= 500 and (
                                r.status_code != 503 or r.headers["content-type"]
                                != "application/problem+json"):
                            bad.append(f"{r.status_code} {r.headers['content-type']} {r.text}")
        own_postgres.shut_down()
        t = threading.Thread(target=hammer)
        t.start()
        time.sleep(12)  # longer than the pool's 10 s wait for a connection
        own_postgres.start_again()
        down.set()
        t.join(60)
        assert bad == [] and answers[503] > 0, (answers, bad[:3])
        for run_id in runs:
            done = wait_status(c, run_id, {"completed", "failed", "stopped"}, timeout=180)
            assert done["status"] == "completed", done
            history = sse_events(c, run_id)
            assert history[-1][1] == "result"
    store = open_store(url, pool_size=2)
    try:
        assert_played_once(store, runs)
    finally:
        store.close()
    print(f"answers while the database was down: {dict(answers)}")
