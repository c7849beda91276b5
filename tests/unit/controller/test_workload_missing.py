"""A run whose Job create never reached the API server is created again, not stopped.

The cluster test that found it (tests/cluster/test_faults.py, the kube-apiserver
restart): the API's create failed, the controller's too, and the executor still took
the run's Job for "just made, not in the cache yet". The next pass admitted the run,
the unsuspend met a 404, and the pass after that read the missing Job as
`kubectl delete job`: the run ended `stopped` without a step played.

Here the real Kubernetes client talks to a closed port (the restarting API server)
and to a local server answering as the API server does (a Status body with 404).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from controller.executor import Executor, WorkloadMissing
from controller.kubernetes.executor import KubernetesExecutor
from controller.kubernetes.settings import KubernetesSettings
from controller.reconciler import Limits, Reconciler
from controller.workload import GONE, WorkloadState
from core.eventlog.sqlite_log import SqliteEventLog
from core.records import Run
from core.status import RunStatus
from core.store import Store
from core.store.sqlite import SqliteStore
from tests.factories import daily_spec, make_model


class NoJobs(BaseHTTPRequestHandler):
    """Every Job is missing: the Status an API server sends for a PATCH of one."""

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        name = self.path.rsplit("/", 1)[-1]
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "message": f'jobs.batch "{name}" not found',
                           "reason": "NotFound", "details": {"name": name, "group": "batch",
                                                             "kind": "jobs"},
                           "code": 404}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class EmptyCache:
    """The informer after a restarted API server: no Job, no pod of the run."""

    def job(self, run_id: int) -> None:
        return None

    def pods(self, run_id: int) -> list[dict[str, Any]]:
        return []


def executor_at(host: str) -> KubernetesExecutor:
    configuration = client.Configuration()
    configuration.host = host
    configuration.retries = False
    ex = KubernetesExecutor(KubernetesSettings(), client.ApiClient(configuration))
    ex.informer = EmptyCache()  # type: ignore[assignment]
    return ex


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def no_jobs_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoJobs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def a_run(store: Store) -> Run:
    model = make_model(store, "u", "m")
    spec = daily_spec()
    return store.create_run("u", model.id, spec, spec.step_count())[0]


def test_a_create_that_never_reached_the_api_server_leaves_the_run_without_a_job(
        store: Store) -> None:
    run = a_run(store)
    ex = executor_at(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(Exception, match="Connection refused"):
        ex.submit(run)
    # Not "pending" (a Job on its way into the cache): the next pass must create it.
    assert ex.observe([run.id])[run.id].phase == "gone"


def test_unsuspending_a_job_the_api_server_does_not_have_says_so(
        store: Store, no_jobs_server: str) -> None:
    run = a_run(store)
    ex = executor_at(no_jobs_server)
    with pytest.raises(WorkloadMissing, match="tickrun-run-"):
        ex.admit(run.id)
    assert ex.observe([run.id])[run.id].phase == "gone"


class LostCreates(Executor):
    """Its first create is lost on the way (as in a restart); admit() speaks as the
    Kubernetes executor does of a Job it does not have."""

    name = "lost-creates"
    gone_means_stopped = True

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[int, WorkloadState] = {}
        self.calls: list[tuple[str, int]] = []
        self.lose_next_create = True

    def submit(self, run: Run) -> None:
        self.calls.append(("submit", run.id))
        if self.lose_next_create:
            self.lose_next_create = False
            return  # answered, never made: the pass believes it exists
        self.jobs[run.id] = WorkloadState("suspended")

    def admit(self, run_id: int) -> None:
        self.calls.append(("admit", run_id))
        if run_id not in self.jobs:
            raise WorkloadMissing(f"no Job for run {run_id}")
        self.jobs[run_id] = WorkloadState("pending")

    def stop(self, run_id: int) -> None:
        self.calls.append(("stop", run_id))

    def observe(self, run_ids: Iterable[int]) -> dict[int, WorkloadState]:
        # The lost create reads as "pending" for the pass that made it, as a just-made
        # Job does before the cache has it.
        return {r: self.jobs.get(r, WorkloadState("pending") if ("submit", r) in self.calls
                                 else GONE) for r in run_ids}

    def workload_run_ids(self) -> set[int]:
        return set(self.jobs)


def test_an_admitted_run_without_its_job_gets_one_and_is_not_stopped(store: Store) -> None:
    run = a_run(store)
    ex = LostCreates()
    assert isinstance(store, SqliteStore)
    rec = Reconciler(store, SqliteEventLog(store), ex, Limits(2, 10), lost_grace_seconds=0)
    rec.reconcile_once()
    assert ex.calls == [("submit", run.id), ("admit", run.id), ("submit", run.id),
                        ("admit", run.id)]
    assert ex.jobs[run.id].phase == "pending"
    rec.reconcile_once()
    assert store.get_run(run.id).status is RunStatus.ADMITTED
