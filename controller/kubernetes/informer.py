"""A small informer: Jobs and Pods of tickrun, cached by run id, kept by two watches.

Each watch runs in its own thread and calls `on_change(run_id)` after applying an
event, so the reconciler handles one run's events in order and never polls. The cache
starts empty on every (re-)list: objects absent from a fresh list are gone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from prometheus_client import Counter, Histogram

from controller.kubernetes.jobs import RUN_ID, RUN_SELECTOR
from controller.kubernetes.settings import KubernetesSettings
from controller.kubernetes.watch import watch_forever

log = logging.getLogger(__name__)

WATCH_RESTARTS = Counter("tickrun_controller_watch_restarts_total",
                         "Watch streams restarted, by resource and cause",
                         ["resource", "cause"])
WATCH_LAG = Histogram(
    "tickrun_controller_watch_lag_seconds",
    "From a change of a Job (or of a pod's phase) on the API server, by its newest "
    "managedFields time in whole seconds, to the controller applying the watch event",
    ["resource"], buckets=(1, 2, 3, 5, 10, 20, 30, 60, 120))

# What the controller reads of a Job or a Pod (status.interpret, the Event recorder,
# the run id label). The rest (managedFields, the pod template, annotations, image ids,
# IPs) is most of an object's size, and the informer keeps one Job and its pods per run
# for as long as the Job stays (its TTL): 5,000 runs are 10,000 objects.
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels",
                  "creationTimestamp", "deletionTimestamp")
_CONDITION = ("type", "status", "reason", "message", "lastTransitionTime")
_CONTAINER_STATE = {"terminated": ("exitCode", "reason", "message"),
                    "waiting": ("reason", "message"), "running": ()}


def _pick(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in keys if k in obj}


def _container(status: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key in ("state", "lastState"):
        states = {name: _pick(state, _CONTAINER_STATE[name])
                  for name, state in (status.get(key) or {}).items()
                  if name in _CONTAINER_STATE and isinstance(state, dict)}
        if states:
            kept[key] = states
    return kept


def _metadata(meta: dict[str, Any]) -> dict[str, Any]:
    return _pick(meta, _KEPT_METADATA)


def slim(resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    if resource == "jobs":
        kept_status = {"conditions": [_pick(c, _CONDITION) for c in conditions
                                      if c.get("status") == "True"]}
        return {"metadata": _metadata(obj.get("metadata") or {}), "status": kept_status,
                "spec": {"suspend": (obj.get("spec") or {}).get("suspend")}}
    kept_status = _pick(status, ("phase", "startTime"))
    kept_status["conditions"] = [_pick(c, _CONDITION) for c in conditions
                                 if c.get("type") == "PodScheduled"]
    kept_status["containerStatuses"] = [_container(cs)
                                        for cs in status.get("containerStatuses") or []]
    return {"metadata": _metadata(obj.get("metadata") or {}), "status": kept_status}


def _pack(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _unpack(packed: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(packed)
    return obj


def last_changed(obj: dict[str, Any]) -> dt.datetime | None:
    """The newest managedFields time: when a manager last changed the object."""
    times = [f["time"] for f in (obj.get("metadata") or {}).get("managedFields") or []
             if f.get("time")]
    return dt.datetime.fromisoformat(max(times)) if times else None


def run_id_of(obj: dict[str, Any]) -> int | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(RUN_ID)
    return int(value) if value and value.isdigit() else None


class RunInformer:
    def __init__(self, batch: client.BatchV1Api, core: client.CoreV1Api,
                 settings: KubernetesSettings, on_change: Callable[[int], None]) -> None:
        self._batch = batch
        self._core = core
        self._settings = settings
        self._on_change = on_change
        self._lock = threading.Lock()
        # Each object slim and packed as JSON bytes: one allocation instead of a few
        # hundred small ones, which after many watch events leave the heap fragmented.
        self._jobs: dict[int, bytes] = {}
        self._pods: dict[int, dict[str, bytes]] = {}
        self._synced = {"jobs": threading.Event(), "pods": threading.Event()}
        self._threads: list[threading.Thread] = []

    # -- reads -----------------------------------------------------------------------
    def job(self, run_id: int) -> dict[str, Any] | None:
        with self._lock:
            packed = self._jobs.get(run_id)
        return None if packed is None else _unpack(packed)

    def pods(self, run_id: int) -> list[dict[str, Any]]:
        with self._lock:
            packed = list(self._pods.get(run_id, {}).values())
        return [_unpack(p) for p in packed]

    def run_ids(self) -> set[int]:
        with self._lock:
            return set(self._jobs) | {r for r, pods in self._pods.items() if pods}

    def wait_synced(self, timeout: float) -> bool:
        return all(e.wait(timeout) for e in self._synced.values())

    # -- watching --------------------------------------------------------------------
    def start(self, stop: threading.Event) -> None:
        ns = self._settings.namespace
        for resource, list_fn in (
            ("jobs", lambda **kw: self._batch.list_namespaced_job(ns, **kw)),
            ("pods", lambda **kw: self._core.list_namespaced_pod(ns, **kw)),
        ):
            thread = threading.Thread(target=self._watch, args=(resource, list_fn, stop),
                                      name=f"watch-{resource}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _watch(self, resource: str, list_fn: Callable[..., Any], stop: threading.Event) -> None:
        fresh: dict[int, Any] | None = None
        for event in watch_forever(
            list_fn, label_selector=RUN_SELECTOR,
            timeout_seconds=self._settings.watch_timeout_seconds,
            inactivity_seconds=self._settings.watch_inactivity_seconds, stop=stop,
            on_restart=lambda cause: WATCH_RESTARTS.labels(resource, cause).inc(),
        ):
            if event.type == "SYNC":
                fresh = fresh if fresh is not None else {}
                self._collect(resource, fresh, event.object)
            elif event.type == "SYNCED":
                self._replace(resource, fresh or {})
                fresh = None
                self._synced[resource].set()
            else:
                self._apply(resource, event.type, event.object)

    def _observe_lag(self, resource: str, kind: str, obj: dict[str, Any],
                     run_id: int) -> None:
        """A Job's every change, and a pod's phase changes, are timestamped by their
        manager's managedFields entry. Other pod events may not be (the Job controller
        removing its finalizer can drop its whole entry), so they are not counted."""
        if kind not in ("ADDED", "MODIFIED"):
            return
        if resource == "pods" and kind == "MODIFIED":
            with self._lock:
                packed = self._pods.get(run_id, {}).get(obj["metadata"]["name"])
            before = None if packed is None else _unpack(packed)
            phase = (obj.get("status") or {}).get("phase")
            if before is not None and before["status"].get("phase") == phase:
                return
        changed = last_changed(obj)
        if changed is not None:
            lag = (dt.datetime.now(dt.UTC) - changed).total_seconds()
            WATCH_LAG.labels(resource).observe(max(0.0, lag))

    def _collect(self, resource: str, fresh: dict[int, Any], obj: dict[str, Any]) -> None:
        run_id = run_id_of(obj)
        if run_id is None:
            return
        packed = _pack(slim(resource, obj))
        if resource == "jobs":
            fresh[run_id] = packed
        else:
            fresh.setdefault(run_id, {})[obj["metadata"]["name"]] = packed

    def _replace(self, resource: str, fresh: dict[int, Any]) -> None:
        with self._lock:
            old = self._jobs if resource == "jobs" else self._pods
            changed = set(old) | set(fresh)
            if resource == "jobs":
                self._jobs = fresh
            else:
                self._pods = fresh
        for run_id in sorted(changed):
            self._on_change(run_id)

    def _apply(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        run_id = run_id_of(obj)
        if run_id is None:
            return
        self._observe_lag(resource, kind, obj, run_id)
        packed = _pack(slim(resource, obj))
        with self._lock:
            if resource == "jobs":
                if kind == "DELETED":
                    self._jobs.pop(run_id, None)
                else:
                    self._jobs[run_id] = packed
            else:
                pods = self._pods.setdefault(run_id, {})
                if kind == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = packed
        self._on_change(run_id)
