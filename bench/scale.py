"""`python -m bench scale [TOTAL]`: the controller with 5,000 runs on simulated nodes.

kwok (`make cluster-kwok`, built from its Go module) turns the test cluster into one with
FAKE_NODES simulated nodes: their pods start at once and end 20 s later, without
containers. The runners are simulated too, by a stub in this process that takes each
admitted run (running) and writes its final status HOLD_SECONDS later, as a runner
would, before kwok ends its pod. The API (real HTTP, PostgreSQL, Redis) creates one Job
per run; the controller (its own process, as deployed) admits them, watches the Jobs
and pods, and keeps every finished Job and pod in its informer until their TTL.

Runs arrive in waves that bring the total to 1k, 2k and 5k. After each wave has ended
(every run final, every pod ended), the bench reports for that wave:
- admission: runs per second from the wave's first POST to its last admission, and
  the queue wait p99 (created -> admitted);
- reconcile pass time (mean and p99 of the controller's own histogram, this wave), and
  the time per change: seconds in passes over what changed per run id they handled;
- watch lag p50/p99 (the controller's histogram: an object's last change on the API
  server to the watch event applied; whole-second timestamps, so +-1 s);
- the controller's RSS at the end of the wave and its peak (VmHWM).
The cost must grow no faster than linearly with the runs the controller holds.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._support import emit, percentile

FAKE_NODES = 10  # 1,000 pods each (kwok_stages.yaml): room for every run's pod
HOLD_SECONDS = 5.0  # a simulated runner plays this long after admission
# kwok ends a run's pod 20 s after it started (kwok_stages.yaml), after the stub runner
# has written the run's final status, as a real runner does before it exits.
POSTERS = 8  # concurrent API clients submitting a wave, each its own user
PER_USER = 1000  # the most ControllerSettings allows; the global limit is the total
NODE_LABEL = "tickrun.io/bench-node"
REPO = Path(__file__).resolve().parent.parent


def _kwok(kubeconfig: Path, log_dir: Path) -> subprocess.Popen[bytes]:
    binary = subprocess.run([str(REPO / "tests/cluster/kwok.sh")], check=True,
                            capture_output=True, text=True).stdout.strip()
    log = open(log_dir / "kwok.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [binary, f"--kubeconfig={kubeconfig}", "--manage-all-nodes=false",
         f"--manage-nodes-with-label-selector={NODE_LABEL}=kwok",
         f"--config={REPO / 'bench/kwok_stages.yaml'}", "--cidr=100.64.0.0/16"],
        stdout=log, stderr=log)


def _fake_nodes(core: Any) -> list[str]:
    from kubernetes import client

    names = [f"kwok-bench-{i:02d}" for i in range(FAKE_NODES)]
    for name in names:
        core.create_node(client.V1Node(metadata=client.V1ObjectMeta(
            name=name, labels={NODE_LABEL: "kwok", "kubernetes.io/hostname": name},
            annotations={"kwok.x-k8s.io/node": "fake"})))
    deadline = time.monotonic() + 60
    while True:
        ready = [n for n in core.list_node(label_selector=f"{NODE_LABEL}=kwok").items
                 if any(c.type == "Ready" and c.status == "True"
                        for c in (n.status.conditions or []))]
        if len(ready) == len(names):
            return names
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ready)} of {len(names)} kwok nodes Ready after 60 s")
        time.sleep(0.5)


class StubRunners:
    """Plays every admitted run as a runner would: running at once, then completed
    with a result HOLD_SECONDS after it was taken."""

    def __init__(self, db_url: str) -> None:
        from core.lifecycle import Lifecycle
        from core.store import open_store

        self.store = open_store(db_url, pool_size=2)
        self.lifecycle = Lifecycle(self.store)
        self.taken: dict[int, float] = {}
        self.finished = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="stub-runners", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from core.status import RunStatus

        while not self.stop.wait(0.25):
            for run in self.store.runs_with_status([RunStatus.ADMITTED]):
                self.lifecycle.start(run.id, decider="stub")
                self.taken[run.id] = time.monotonic()
            due = [r for r, t in self.taken.items() if time.monotonic() - t >= HOLD_SECONDS]
            for run_id in due:
                run = self.store.get_run(run_id)
                self.lifecycle.finish(run, RunStatus.COMPLETED, None,
                                      result={"ending": "completed", "simulated": True},
                                      attempt=run.attempts)
                del self.taken[run_id]
                self.finished += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.store.close()


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _histogram(before: dict[str, Any], after: dict[str, Any], name: str,
               **labels: str) -> dict[str, float]:
    """This wave's part of a histogram: mean and bucket-estimated p50/p99."""
    def pick(m: dict[str, Any], suffix: str) -> list[tuple[dict[str, str], float]]:
        return [(lb, v) for lb, v in m.get(name + suffix, [])
                if all(lb.get(k) == v2 for k, v2 in labels.items())]

    def total(m: dict[str, Any], suffix: str) -> float:
        return sum(v for _, v in pick(m, suffix))

    count = total(after, "_count") - total(before, "_count")
    if count <= 0:
        return {"count": 0}
    was = {lb["le"]: v for lb, v in pick(before, "_bucket")}
    buckets = sorted(((float(lb["le"]), v - was.get(lb["le"], 0.0))
                      for lb, v in pick(after, "_bucket")), key=lambda b: b[0])

    def quantile(q: float) -> float:
        return next(le for le, n in buckets if n >= q * count)

    return {"count": int(count),
            "mean_s": round((total(after, "_sum") - total(before, "_sum")) / count, 4),
            "p50_le_s": quantile(0.5), "p99_le_s": quantile(0.99)}


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def _models(api: Any) -> dict[str, int]:
    """One model per posting user."""
    models = {}
    for i in range(POSTERS):
        with api.client(f"scale-{i}") as c:
            models[f"scale-{i}"] = c.post("/v1/models", json={"signature": "scale"}).json()["id"]
    return models


def _post_wave(api: Any, models: dict[str, int], count: int) -> list[int]:
    def post(user: str, n: int) -> list[int]:
        body = {"model_id": models[user], "mode": "daily", "symbols": ["SPY"],
                "start": "2024-01-02", "end": "2024-01-31", "decider": "buy_and_hold",
                "data": "synthetic"}
        with api.client(user) as c:
            return [c.post("/v1/runs", json=body).raise_for_status().json()["id"]
                    for _ in range(n)]

    shares = [count // POSTERS + (1 if i < count % POSTERS else 0) for i in range(POSTERS)]
    with cf.ThreadPoolExecutor(POSTERS) as pool:
        return [rid for ids in pool.map(post, models, shares) for rid in ids]


def _wait_wave_ended(stack: Any, store: Any, ids: list[int], timeout: float) -> None:
    """Every run final and every Job complete (its pod ended): the controller's informer
    then holds this wave's Jobs and pods, as they stay until their TTL."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = store.run_statuses(ids)
        open_runs = sum(1 for s in statuses.values() if not s.is_terminal)
        # Server-side filter: only the unfinished Jobs cross the wire.
        unfinished = len(stack.cluster.batch.list_namespaced_job(
            stack.namespace, label_selector="tickrun.io/run-id",
            field_selector="status.successful!=1").items) if not open_runs else -1
        if unfinished == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"wave not ended after {timeout:.0f} s: {open_runs} runs "
                               f"open, {unfinished} Jobs unfinished")
        time.sleep(2.0)


def _per_change_ms(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """Time in passes over what changed, per run id handled: what one change costs."""
    def total(m: dict[str, Any], name: str) -> float:
        return float(sum(v for _, v in m.get(name, [])))

    changes = (total(after, "tickrun_controller_run_changes_total")
               - total(before, "tickrun_controller_run_changes_total"))
    seconds = (total(after, "tickrun_controller_changed_pass_seconds_sum")
               - total(before, "tickrun_controller_changed_pass_seconds_sum"))
    return round(seconds / changes * 1000, 3) if changes else None


def _wave(stack: Any, api: Any, store: Any, models: dict[str, int], count: int, port: int,
          pid: int) -> dict[str, Any]:
    before = _scrape(port)
    posted = time.time()
    ids = _post_wave(api, models, count)
    post_seconds = time.time() - posted
    _wait_wave_ended(stack, store, ids, timeout=600 + count * 0.2)
    after = _scrape(port)
    runs = [store.get_run(r) for r in ids]
    admitted = [r.admitted_at.timestamp() for r in runs if r.admitted_at]
    waits = [(r.admitted_at - r.created_at).total_seconds() for r in runs if r.admitted_at]
    rss, peak = _rss_mb(pid)
    return {
        "runs": count, "post_seconds": round(post_seconds, 1),
        "posts_per_s": round(count / post_seconds, 1),
        "admissions_per_s": round(len(admitted) / max(1e-6, max(admitted) - posted), 1),
        "admission_wait_p50_s": round(percentile(waits, 50), 2),
        "admission_wait_p99_s": round(percentile(waits, 99), 2),
        "completed": sum(1 for r in runs if r.status.value == "completed"),
        "reconcile_pass": _histogram(before, after, "tickrun_controller_reconcile_seconds"),
        "changed_pass": _histogram(before, after, "tickrun_controller_changed_pass_seconds"),
        "ms_per_change": _per_change_ms(before, after),
        "watch_lag_jobs": _histogram(before, after, "tickrun_controller_watch_lag_seconds",
                                     resource="jobs"),
        "watch_lag_pods": _histogram(before, after, "tickrun_controller_watch_lag_seconds",
                                     resource="pods"),
        "controller_rss_mb": round(rss, 1), "controller_peak_rss_mb": round(peak, 1),
    }


def _scale(total: int) -> Any:
    def play(stack: Any, pg: Any) -> dict[str, Any]:
        from core.store import open_store

        kwok = _kwok(stack.cluster.kubeconfig, stack.log_dir)
        nodes: list[str] = []
        stub = StubRunners(stack.db_url)
        store = open_store(stack.db_url, pool_size=2)
        try:
            nodes = _fake_nodes(stack.cluster.core)
            selector = f'{{"{NODE_LABEL}": "kwok"}}'
            proc = stack.start_controller("scale", per_user=PER_USER,
                                          TICKRUN_GLOBAL_LIMIT=total,
                                          TICKRUN_K8S_NODE_SELECTOR=selector)
            port = int(proc.args[proc.args.index("--metrics-port") + 1])
            _wait_metrics(port)
            idle_rss = _rss_mb(proc.pid)[0]
            waves: list[dict[str, Any]] = []
            with stack.api(TICKRUN_K8S_NODE_SELECTOR=selector) as api:
                models = _models(api)
                done = 0
                for target in _targets(total):
                    waves.append({"total_runs": target,
                                  **_wave(stack, api, store, models, target - done, port,
                                          proc.pid)})
                    print(f"wave: {waves[-1]}", file=sys.stderr, flush=True)
                    done = target
            return {"fake_nodes": len(nodes), "hold_seconds": HOLD_SECONDS,
                    "controller_rss_mb_before": round(idle_rss, 1), "waves": waves,
                    "rss_per_1k_runs_mb": _rss_slope(waves)}
        finally:
            stub.close()
            store.close()
            stack.stop_controllers()
            for name in nodes:
                stack.cluster.core.delete_node(name)
            kwok.terminate()
            kwok.wait(20)
    return play


def _targets(total: int) -> list[int]:
    return [t for t in (1000, 2000) if t < total] + [total]


def _rss_slope(waves: list[dict[str, Any]]) -> float | None:
    if len(waves) < 2:
        return None
    first, last = waves[0], waves[-1]
    runs: float = (last["total_runs"] - first["total_runs"]) / 1000
    grown: float = last["controller_rss_mb"] - first["controller_rss_mb"]
    return round(grown / runs, 1)


def _wait_metrics(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            _scrape(port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO))
    from bench.cluster import with_stack

    total = int(argv[0]) if argv else 5000
    os.environ.setdefault("TICKRUN_LOG_LEVEL", "WARNING")
    started = time.monotonic()
    result = with_stack(_scale(total))
    result["bench_seconds"] = round(time.monotonic() - started)
    emit(result)
    return 0
