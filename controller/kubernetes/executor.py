"""The Kubernetes executor: one batch/v1 Job per run.

The API process uses submit and stop only; the controller also starts the informer,
whose cache of Jobs and Pods answers observe() without a single polling call.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.executor import Executor, WorkloadMissing
from controller.kubernetes.api import api_client, refused, unread, with_retries
from controller.kubernetes.events import EventRecorder
from controller.kubernetes.informer import RunInformer
from controller.kubernetes.jobs import build_job, job_name
from controller.kubernetes.settings import KubernetesSettings
from controller.kubernetes.status import interpret
from controller.workload import WorkloadState
from core.errors import TemporaryError
from core.records import Run

log = logging.getLogger(__name__)

# A Job this process just created may not be in the informer's cache yet; until then it
# is "pending", never "gone" (which would read as `kubectl delete job`).
CACHE_LAG_SECONDS = 30.0


class KubernetesExecutor(Executor):
    name = "kubernetes"
    gone_means_stopped = True  # `kubectl delete job` is a stop, as DESIGN.md says
    concurrent_admission = True  # an unsuspend PATCH and an Event per run, I/O bound

    def __init__(self, settings: KubernetesSettings, api: client.ApiClient | None = None,
                 *, component: str = "tickrun", instance: str = "") -> None:
        super().__init__()
        self.settings = settings
        self.api = api or api_client(settings)
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.recorder = EventRecorder(self.core, namespace=settings.namespace,
                                      component=component, instance=instance or component)
        self.informer: RunInformer | None = None
        self._recent: dict[int, float] = {}
        self._lock = threading.Lock()

    # -- the informer (controller only) ------------------------------------------------
    def start_informer(self, stop: threading.Event, *, sync_timeout: float = 60.0) -> None:
        self.informer = RunInformer(self.batch, self.core, self.settings,
                                    on_change=self.changes.add)
        self.informer.start(stop)
        if not self.informer.wait_synced(sync_timeout):
            raise TemporaryError("the Job and Pod watches did not sync")

    # -- Executor ----------------------------------------------------------------------
    def submit(self, run: Run) -> None:
        body = build_job(run, self.settings)
        self._remember(run.id)
        try:
            # The client takes the plain dict the API speaks (its stubs say V1Job).
            with_retries(lambda: unread(self.batch.create_namespaced_job,
                                        self.settings.namespace, body))
            log.info("run %d: Job %s created (suspended)", run.id, job_name(run.id),
                     extra={"run_id": run.id, "user_id": run.user_id})
        except ApiException as exc:
            if exc.status == 409:
                return  # AlreadyExists: an earlier attempt (or a retry of this one) made it
            self._forget_recent(run.id)  # no Job is on its way into the cache
            refusal = refused(exc)
            if refusal is None:
                raise
            raise refusal from exc
        except Exception:
            # Unreachable API server, timeout: if no Job was made, the run must read as
            # "gone" (not "pending") so the next pass creates it; if one was, the next
            # create answers 409 and the cache shows it.
            self._forget_recent(run.id)
            raise

    def admit(self, run_id: int) -> None:
        self._remember(run_id)
        try:
            with_retries(lambda: unread(self.batch.patch_namespaced_job, job_name(run_id),
                                        self.settings.namespace, {"spec": {"suspend": False}}))
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._forget_recent(run_id)
            raise WorkloadMissing(f"no Job {job_name(run_id)} to unsuspend") from exc

    def stop(self, run_id: int) -> None:
        name = job_name(run_id)
        job = self.informer.job(run_id) if self.informer else None
        self.recorder.record(job or {"metadata": {"name": name}}, "StopRequested",
                             "deleting the Job; the runner gets SIGTERM and saves its results")
        try:
            with_retries(lambda: unread(
                self.batch.delete_namespaced_job, name, self.settings.namespace,
                body=client.V1DeleteOptions(propagation_policy="Foreground")))
        except ApiException as exc:
            if exc.status != 404:
                raise

    def observe(self, run_ids: Iterable[int]) -> dict[int, WorkloadState]:
        if self.informer is None:
            raise RuntimeError("observe() needs the informer: call start_informer() first")
        now = dt.datetime.now(dt.UTC)
        states = {}
        for run_id in run_ids:
            job = self.informer.job(run_id)
            if job is not None:
                self._forget_recent(run_id)  # the cache has it: from now on it tells the truth
            state = interpret(job, self.informer.pods(run_id), now=now,
                              unschedulable_timeout=self.settings.unschedulable_timeout_seconds,
                              start_timeout=self.settings.container_start_timeout_seconds)
            if state.phase == "gone" and self._just_made(run_id):
                state = WorkloadState("pending")
            elif state.phase == "gone":
                state = WorkloadState("gone", "Job deleted", pod_alive=state.pod_alive)
            states[run_id] = state
        return states

    def workload_run_ids(self) -> set[int]:
        return self.informer.run_ids() if self.informer else set()

    def record(self, run_id: int, reason: str, message: str, *, warning: bool = False) -> None:
        self.recorder.record(lambda: self._job_for_event(run_id), reason, message,
                             warning=warning)

    def _job_for_event(self, run_id: int) -> dict[str, Any]:
        """On the Event sender's thread: the Job as the informer has it, else read (just
        made: its uid ties the Event to it for `kubectl describe`), else by name."""
        job = self.informer.job(run_id) if self.informer else None
        if job is None:
            job = self._read_job(run_id)
        return job or {"metadata": {"name": job_name(run_id)}}

    def record_on_lease(self, lease: str, reason: str, message: str, *,
                        warning: bool = False) -> None:
        """An Event about no one run (a schedule's missed fire) on the controllers'
        Lease: `kubectl get events` and `kubectl describe lease` show it."""
        self.recorder.record({"metadata": {"name": lease}}, reason, message, warning=warning,
                             kind="Lease", api_version="coordination.k8s.io/v1")

    def close(self) -> None:
        self.recorder.close()
        self.api.close()

    # -- internals ---------------------------------------------------------------------
    def _read_job(self, run_id: int) -> dict[str, Any] | None:
        try:
            meta = self.batch.read_namespaced_job(job_name(run_id),
                                                  self.settings.namespace).metadata
        except Exception:  # best effort: the Event goes out by name alone
            return None
        if meta is None:
            return None
        return {"metadata": {"name": meta.name, "uid": meta.uid,
                             "resourceVersion": meta.resource_version}}

    def _remember(self, run_id: int) -> None:
        with self._lock:
            self._recent[run_id] = time.monotonic()

    def _forget_recent(self, run_id: int) -> None:
        with self._lock:
            self._recent.pop(run_id, None)

    def _just_made(self, run_id: int) -> bool:
        with self._lock:
            made = self._recent.get(run_id)
            if made is not None and time.monotonic() - made > CACHE_LAG_SECONDS:
                del self._recent[run_id]
                return False
            return made is not None
