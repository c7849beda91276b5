"""A run whose Job the API could not make starts within seconds, not at the next
resync: the API stores it, tells the controllers through PostgreSQL (NOTIFY), and the
controller (another process's reconciler, resync 300 s) makes the workload itself."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from controller.local import LocalExecutor
from controller.reconciler import Limits, Reconciler
from core.records import Run
from core.store import open_store
from tests.apiserver import Backend, running_api, wait_for
from tests.integration.test_api_runs import create, create_model, intraday
from tests.servers import Redis

pytestmark = pytest.mark.timeout(120)
RESYNC_SECONDS = 300.0  # far longer than the test: only the channel can wake it


class RefusingExecutor(LocalExecutor):
    """The API's executor when the API server refuses its Job creates."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend.runner_env(), log_dir=backend.log_dir)
        self.refused: list[int] = []

    def submit(self, run: Run) -> None:
        self.refused.append(run.id)
        raise RuntimeError("jobs.batch is forbidden")


def test_the_controller_makes_a_workload_the_api_could_not(
        postgres_url: str, redis_server: Redis, redis_prefix: str, tmp_path: Path) -> None:
    backend = Backend(postgres_url, redis_server.url(), redis_prefix, tmp_path / "logs")
    store, events = open_store(postgres_url, pool_size=4), backend.event_log()
    reconciler = Reconciler(store, events, LocalExecutor(backend.runner_env(),
                                                         log_dir=backend.log_dir),
                            Limits(2, 20))
    stop = threading.Event()
    reconciler.reconcile_once()  # its start-up pass is behind it

    def controller() -> None:
        while not stop.is_set():
            reconciler.wait_for_change(stop, RESYNC_SECONDS)
            if not stop.is_set():
                reconciler.reconcile_once()
    threads = [threading.Thread(target=controller, daemon=True),
               threading.Thread(target=store.listen_for_controller,
                                args=(stop, reconciler.wake.set), daemon=True)]
    for thread in threads:
        thread.start()
    refusing = RefusingExecutor(backend)
    try:
        with running_api(backend, reconcile=False, executor=refusing) as api, \
                api.client() as c:
            run = create(c, intraday(create_model(c)))
            assert run["status"] == "queued" and refusing.refused == [run["id"]]
            started = wait_for(lambda: c.get(f"/v1/runs/{run['id']}").json()["status"]
                               in ("running", "completed"), timeout=30)
            assert started
            done = wait_for(lambda: (r := c.get(f"/v1/runs/{run['id']}").json())
                            ["status"] == "completed" and r, timeout=60)
            assert done["progress"]["step"] == 390
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        reconciler.executor.close()
        events.close()
        store.close()
