"""Kubernetes Events on a run's Job: what an operator reads in `kubectl describe job`.

Events go out from a thread of their own, in the order recorded: an admission, a stop or
a reconcile pass never waits on one (each is an API call, and the Job lookup that ties
it to its uid another). Under a flood the queue keeps the oldest and drops new ones,
counted in tickrun_controller_events_dropped_total; at close the queue is drained for a
few seconds at most.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from controller import telemetry
from controller.kubernetes.api import unread

log = logging.getLogger(__name__)

QUEUE_CAPACITY = 10_000
DRAIN_SECONDS = 5.0

Obj = dict[str, Any]  # the object's metadata as the informer keeps it: {"metadata": {...}}


@dataclass(frozen=True, slots=True)
class _Pending:
    find_object: Callable[[], Obj]  # called on the sender thread
    reason: str
    message: str
    warning: bool
    kind: str
    api_version: str
    at: dt.datetime  # when it happened, not when it went out


class EventRecorder:
    def __init__(self, core: client.CoreV1Api, *, namespace: str, component: str,
                 instance: str, capacity: int = QUEUE_CAPACITY) -> None:
        self.core = core
        self.namespace = namespace
        self.component = component
        self.instance = instance
        self._queue: queue.Queue[_Pending | None] = queue.Queue(capacity)
        self._sender = threading.Thread(target=self._send_all, name="k8s-events",
                                         daemon=True)
        self._sender.start()

    def record(self, job: Obj | Callable[[], Obj], reason: str, message: str, *,
               warning: bool = False, kind: str = "Job", api_version: str = "batch/v1") -> None:
        """Best effort, never blocking: a failed or dropped Event never fails the
        reconcile that wanted it. `job`: the object (a Job unless `kind` says otherwise),
        or how to find it (looked up on the sender thread)."""
        find = job if callable(job) else (lambda: job)
        pending = _Pending(find, reason, message, warning, kind, api_version,
                           dt.datetime.now(dt.UTC))
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            telemetry.EVENTS_DROPPED.inc()
            log.warning("event queue full: Event %s dropped", reason)

    def close(self, timeout: float = DRAIN_SECONDS) -> None:
        """Send what is queued (for `timeout` at most), then stop the sender."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._sender.join(timeout)

    def _send_all(self) -> None:
        while (pending := self._queue.get()) is not None:
            try:
                unread(self.core.create_namespaced_event, self.namespace, self._body(pending))
            except Exception as exc:
                log.warning("could not record event %s: %s", pending.reason, exc)

    def _body(self, p: _Pending) -> client.CoreV1Event:
        meta = p.find_object().get("metadata") or {}
        return client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{meta.get('name', 'tickrun')}."
                                              f"{uuid.uuid4().hex[:10]}",
                                         namespace=self.namespace),
            involved_object=client.V1ObjectReference(
                api_version=p.api_version, kind=p.kind, name=meta.get("name"),
                namespace=self.namespace, uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion")),
            reason=p.reason, message=p.message[:1000],
            type="Warning" if p.warning else "Normal",
            first_timestamp=p.at, last_timestamp=p.at, count=1,
            source=client.V1EventSource(component=self.component, host=self.instance),
            reporting_component=self.component, reporting_instance=self.instance,
        )
