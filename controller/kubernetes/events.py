"""Kubernetes Events on a run's Job: what an operator reads in `kubectl describe job`."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from kubernetes import client

from controller.kubernetes.api import unread

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, core: client.CoreV1Api, *, namespace: str, component: str,
                 instance: str) -> None:
        self.core = core
        self.namespace = namespace
        self.component = component
        self.instance = instance

    def record(self, job: dict[str, Any], reason: str, message: str, *,
               warning: bool = False, kind: str = "Job", api_version: str = "batch/v1") -> None:
        """Best effort: a failed Event never fails the reconcile that wanted it. The
        object is a Job unless `kind` says otherwise."""
        meta = job.get("metadata") or {}
        now = dt.datetime.now(dt.UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{meta.get('name', 'tickrun')}."
                                              f"{uuid.uuid4().hex[:10]}",
                                         namespace=self.namespace),
            involved_object=client.V1ObjectReference(
                api_version=api_version, kind=kind, name=meta.get("name"),
                namespace=self.namespace, uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion")),
            reason=reason, message=message[:1000], type="Warning" if warning else "Normal",
            first_timestamp=now, last_timestamp=now, count=1,
            source=client.V1EventSource(component=self.component, host=self.instance),
            reporting_component=self.component, reporting_instance=self.instance,
        )
        try:
            unread(self.core.create_namespaced_event, self.namespace, body)
        except Exception as exc:
            log.warning("could not record event %s: %s", reason, exc)
