"""`python -m bench cluster`: tickrun on the real test cluster (`make cluster-up`).

- start latency: POST /v1/runs to the runner's first progress event, over 50 runs, each
  awaited before the next (images are local: Kubernetes' pod startup SLO without pulls
  is p99 <= 5 s); the slowest start's timeline (admission, pod created, scheduled,
  container started, runner started, first progress) says where its time went;
- stop latency: POST .../stop to `stopped` with partial results saved;
- status lag with 50 concurrent short runs: the runner's final event to the API showing
  the final status, and POST to completed for the whole batch;
- admission throughput: 1,000 queued runs, each admitted by unsuspending its Job on the
  real API server (a node selector that matches nothing keeps the pods Pending).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench._support import emit, percentile

START_RUNS = 50
STOP_RUNS = 10
CONCURRENT = 50
ADMISSIONS = 1000


def _daily(model_id: int, end: str = "2024-01-31") -> dict[str, Any]:
    return {"model_id": model_id, "mode": "daily", "symbols": ["SPY"], "start": "2024-01-02",
            "end": end, "decider": "buy_and_hold", "data": "synthetic"}


def _intraday(model_id: int) -> dict[str, Any]:
    return {"model_id": model_id, "mode": "intraday", "symbols": ["AAPL"],
            "date": "2025-03-03", "decider": "sma_crossover", "data": "synthetic"}


def _wait(c: httpx.Client, run_id: int, statuses: set[str], timeout: float = 300
          ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = c.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} not {statuses}")


def _start_latency(stack: Any, c: httpx.Client, events: Any, model_id: int
                   ) -> tuple[list[float], list[dict[str, float | None]]]:
    from core.eventlog import EventType

    out, timelines = [], []
    for _ in range(START_RUNS):
        posted = time.time()
        run = c.post("/v1/runs", json=_daily(model_id)).json()
        first = None
        while first is None:
            first = next((e for e in events.read(run["id"], block_ms=200)
                          if e.type is EventType.PROGRESS), None)
        out.append(first.time.timestamp() - posted)
        timelines.append(_timeline(stack, c.get(f"/v1/runs/{run['id']}").json(), posted,
                                   first.time.timestamp()))
        _wait(c, run["id"], {"completed", "failed"})
    return out, timelines


def _timeline(stack: Any, run: dict[str, Any], posted: float, first: float
              ) -> dict[str, float | None]:
    """Seconds after the POST of each step of one start. The API's times are exact;
    the pod's are whole seconds (Kubernetes timestamps)."""
    def at(value: Any) -> float | None:
        if value is None:
            return None
        when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        return round(when.timestamp() - posted, 3)

    pods = stack.cluster.core.list_namespaced_pod(
        stack.namespace, label_selector=f"tickrun.io/run-id={run['id']}").items
    pod = min(pods, key=lambda p: p.metadata.creation_timestamp) if pods else None
    conditions = {c.type: c.last_transition_time for c in
                  ((pod.status.conditions or []) if pod else [])}
    running = None
    for cs in (pod.status.container_statuses or []) if pod else []:
        state = cs.state.running or cs.state.terminated
        running = running or (state.started_at if state else None)
    return {"run_id": run["id"], "created": at(run["created_at"]),
            "admitted": at(run["admitted_at"]),
            "pod_created": at(pod.metadata.creation_timestamp if pod else None),
            "pod_scheduled": at(conditions.get("PodScheduled")),
            "container_started": at(running), "runner_started": at(run["started_at"]),
            "first_progress": round(first - posted, 3), "pods": len(pods)}


def _stop_latency(c: httpx.Client, model_id: int) -> list[float]:
    out = []
    for _ in range(STOP_RUNS):
        run = c.post("/v1/runs", json=_intraday(model_id)).json()
        deadline = time.monotonic() + 120
        while c.get(f"/v1/runs/{run['id']}").json()["progress"]["step"] < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        asked = time.monotonic()
        c.post(f"/v1/runs/{run['id']}/stop")
        stopped = _wait(c, run["id"], {"stopped", "completed", "failed"}, 60)
        assert stopped["status"] == "stopped" and stopped["result"], stopped
        out.append(time.monotonic() - asked)
    return out


def _status_lag(c: httpx.Client, events: Any, model_id: int) -> dict[str, Any]:
    from core.eventlog import EventType

    posted = time.time()
    ids = [c.post("/v1/runs", json=_daily(model_id)).json()["id"] for _ in range(CONCURRENT)]
    seen: dict[int, float] = {}
    while len(seen) < len(ids):
        for rid in ids:
            if rid not in seen and c.get(f"/v1/runs/{rid}").json()["status"] in (
                    "completed", "failed", "stopped"):
                seen[rid] = time.time()
        time.sleep(0.05)
    lags = []
    for rid in ids:
        final = [e for e in events.read(rid, count=10_000) if e.type is EventType.RESULT]
        lags.append(max(0.0, seen[rid] - final[-1].time.timestamp()))
    statuses = [c.get(f"/v1/runs/{r}").json()["status"] for r in ids]
    return {"concurrent_runs": CONCURRENT,
            "concurrent_completed": statuses.count("completed"),
            "concurrent_batch_seconds": round(max(seen.values()) - posted, 1),
            "status_lag_p50_s": round(percentile(lags, 50), 3),
            "status_lag_p99_s": round(percentile(lags, 99), 3)}


ADMISSION_JOBS = "tickrun.io/user-id=admission-bench"


def _await_unsuspended(stack: Any, resource_version: str, count: int
                       ) -> tuple[float | None, int]:
    """Watch the bench's Jobs from `resource_version` until `count` are unsuspended; the
    time the first was seen, and how many were by then. A raw watch: listing and decoding
    1,000 Jobs every poll took the shared cores from the controller and the API server."""
    from kubernetes.watch.watch import iter_resp_lines

    unsuspended: set[str] = set()
    first: float | None = None
    first_count = 0
    deadline = time.monotonic() + 600
    while len(unsuspended) < count:
        assert time.monotonic() < deadline, f"{len(unsuspended)} of {count} admitted"
        stream = stack.cluster.batch.list_namespaced_job(
            stack.namespace, label_selector=ADMISSION_JOBS, watch=True,
            resource_version=resource_version, timeout_seconds=60,
            allow_watch_bookmarks=False, _preload_content=False)
        try:
            for line in iter_resp_lines(stream):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                job = event["object"]
                assert event["type"] != "ERROR", job
                resource_version = job["metadata"]["resourceVersion"]
                if event["type"] == "MODIFIED" and not job["spec"].get("suspend"):
                    unsuspended.add(job["metadata"]["name"])
                    if first is None:
                        first, first_count = time.monotonic(), len(unsuspended)
                    if len(unsuspended) >= count:
                        break
        finally:
            stream.release_conn()
    return first, first_count


def _admission(stack: Any, pg: Any) -> dict[str, Any]:
    from core.status import RunStatus
    from core.store import open_store

    with stack.api(TICKRUN_K8S_NODE_SELECTOR='{"tickrun.io/bench": "no-such-node"}') as api, \
            api.client("admission-bench") as c:
        model_id = c.post("/v1/models", json={"signature": "admit"}).json()["id"]
        for _ in range(ADMISSIONS):
            c.post("/v1/runs", json=_daily(model_id))
        rv = stack.cluster.batch.list_namespaced_job(
            stack.namespace, label_selector=ADMISSION_JOBS).metadata.resource_version
        started = time.monotonic()
        # Pods stay Pending on purpose: no Unschedulable verdict during the benchmark.
        stack.start_controller("bench-admit", per_user=ADMISSIONS,
                               TICKRUN_GLOBAL_LIMIT=ADMISSIONS,
                               TICKRUN_K8S_UNSCHEDULABLE_TIMEOUT_SECONDS=86400)
        store = open_store(stack.db_url, pool_size=1)
        first, first_count = _await_unsuspended(stack, rv, ADMISSIONS)
        ended = time.monotonic()
        took = ended - started
        admitted = store.count_runs_by_status().get(RunStatus.ADMITTED, 0)
        store.close()
        stack.stop_controllers()
    # Without the controller's start (its imports, its informers' first lists): the rate
    # from the first Job seen unsuspended to the last.
    running = (ADMISSIONS - first_count) / (ended - first) if first else None
    return {"admissions": ADMISSIONS, "admission_seconds": round(took, 1),
            "admissions_per_s": round(ADMISSIONS / took, 1),
            "admissions_per_s_once_started": round(running, 1) if running else None,
            "admitted_in_store": admitted}


def with_stack(fn: Any) -> dict[str, Any]:
    from kubernetes import client, config

    from tests.cluster.helpers import Cluster, cluster_path
    from tests.cluster.stack import Stack
    from tests.servers import start_postgres, start_redis

    kubeconfig = Path(cluster_path("kubeconfig"))
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    cluster = Cluster(kubeconfig=kubeconfig, api=api, core=client.CoreV1Api(api),
                      batch=client.BatchV1Api(api),
                      host_address=cluster_path("host-address"))
    _await_no_bench_namespaces(cluster)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace)))
    deadline = time.monotonic() + 30
    while not cluster.core.list_namespaced_service_account(namespace).items:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pg, redis = start_postgres(), start_redis()
    stack = Stack(cluster, namespace, pg, redis, Path(tempfile.mkdtemp()))
    try:
        return dict(fn(stack, pg))
    finally:
        stack.close(pg)
        cluster.core.delete_namespace(namespace)
        pg.stop()
        redis.stop()
        _await_no_bench_namespaces(cluster)


def _await_no_bench_namespaces(cluster: Any, timeout: float = 600) -> None:
    """Until no bench namespace is left: deleting one with 1,000 Jobs and their pods
    keeps the API server and the controller manager busy for a minute or two, which
    the next measurement must not share."""
    deadline = time.monotonic() + timeout
    while any(ns.metadata.name.startswith("bench-")
              for ns in cluster.core.list_namespace().items):
        assert time.monotonic() < deadline, "a bench namespace is still being deleted"
        time.sleep(1)


def _runs(stack: Any, pg: Any) -> dict[str, Any]:
    stack.start_controller("bench", per_user=CONCURRENT, TICKRUN_GLOBAL_LIMIT=CONCURRENT)
    result: dict[str, Any] = {}
    with stack.api(TICKRUN_K8S_RUNNER_ENV='{"TICKRUN_REDIS_KEY_PREFIX": "' + stack.prefix
                   + '"}') as api, api.client("bench-user") as c:
        model_id = c.post("/v1/models", json={"signature": "bench"}).json()["id"]
        events = stack.backend.event_log()
        phase = time.monotonic()
        starts, timelines = _start_latency(stack, c, events, model_id)
        phases = {"starts": round(time.monotonic() - phase, 1)}
        slowest = max(timelines, key=lambda t: t["first_progress"] or 0)
        print(f"slowest start: {slowest}", file=sys.stderr, flush=True)
        result.update({"start_p50_s": round(percentile(starts, 50), 2),
                       "start_p99_s": round(percentile(starts, 99), 2),
                       "start_max_s": round(max(starts), 2), "start_runs": len(starts),
                       "slowest_start": slowest})
        phase = time.monotonic()
        with stack.api() as slow_api, slow_api.client("bench-user") as slow:
            stops = _stop_latency(slow, model_id)
        phases["stops"] = round(time.monotonic() - phase, 1)
        result.update({"stop_p50_s": round(percentile(stops, 50), 2),
                       "stop_p99_s": round(percentile(stops, 99), 2), "stop_runs": len(stops)})
        phase = time.monotonic()
        result.update(_status_lag(c, events, model_id))
        phases["concurrent"] = round(time.monotonic() - phase, 1)
    stack.stop_controllers()
    result["phase_seconds"] = phases  # where the bench's own time went
    return result


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    started = dt.datetime.now(dt.UTC)
    # `python -m bench cluster admission`: the admission part alone.
    result = {} if argv[:1] == ["admission"] else with_stack(_runs)
    print(f"runs: {result}", file=sys.stderr, flush=True)  # kept if the admission part fails
    result.update(with_stack(_admission))
    result["bench_seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds())
    emit(result)
    return 0


