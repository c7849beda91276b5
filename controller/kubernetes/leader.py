"""Leader election on a coordination.k8s.io/v1 Lease.

One replica acts; the others wait. The holder renews every `renew` seconds; a lease not
renewed for `duration` seconds is taken over, so failover happens within one lease
duration. Updates carry the Lease's resourceVersion, so two candidates can never both
win the same round (the API server refuses the stale write with 409).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseElector:
    def __init__(self, api: client.CoordinationV1Api, *, namespace: str, name: str,
                 identity: str, duration: float, renew: float,
                 clock: Callable[[], dt.datetime] = _now) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew = renew
        self.clock = clock
        self.is_leader = threading.Event()

    def try_acquire(self) -> bool:
        """One round: create, renew or take over the Lease. True while we hold it."""
        now = self.clock()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec = lease.spec or client.V1LeaseSpec()
        held_by_other = spec.holder_identity not in (None, "", self.identity)
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or (now - renewed).total_seconds() > (
            spec.lease_duration_seconds or self.duration)
        if held_by_other and not expired:
            return False
        if spec.holder_identity != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.duration)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote first
                return False
            raise
        return True

    def _create(self, now: dt.datetime) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(holder_identity=self.identity, acquire_time=now,
                                    renew_time=now, lease_duration_seconds=int(self.duration),
                                    lease_transitions=0))
        try:
            self.api.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up on shutdown so a standby takes over at once."""
        if not self.is_leader.is_set():
            return
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("could not release the lease: %s", exc.reason)
        self.is_leader.clear()

    def run(self, stop: threading.Event, on_change: Callable[[bool], None]) -> None:
        """Campaign until `stop`; on_change(True/False) as leadership comes and goes."""
        last_success = self.clock()
        while not stop.is_set():
            try:
                held = self.try_acquire()
                if held:
                    last_success = self.clock()
            except Exception as exc:
                log.warning("lease round failed: %s", exc)
                held = self.is_leader.is_set() and (
                    self.clock() - last_success).total_seconds() < self.duration
            if held != self.is_leader.is_set():
                (self.is_leader.set if held else self.is_leader.clear)()
                log.info("leadership %s (%s)", "acquired" if held else "lost", self.identity)
                on_change(held)
            stop.wait(self.renew if held else self.renew / 2)
        self.release()
