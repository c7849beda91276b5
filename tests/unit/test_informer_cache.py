"""The informer keeps what the controller reads of each Job and Pod, and no more: with
5,000 runs its cache is the controller's memory (python -m bench scale)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from prometheus_client import REGISTRY

from controller.kubernetes.informer import RunInformer, last_changed, slim
from controller.kubernetes.status import interpret

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
MANAGED = [{"manager": "kube-controller-manager", "operation": "Update",
            "time": "2026-11-26T11:59:58Z", "fieldsV1": {"f:status": {"." * 40: {}}}},
           {"manager": "tickrun-api", "operation": "Update", "time": "2026-11-26T11:59:50Z",
            "fieldsV1": {"f:spec": {"f:template": {"x" * 400: {}}}}}]


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "tickrun-run-7", "namespace": "ns", "uid": "u-1",
                         "resourceVersion": "42", "labels": {"tickrun.io/run-id": "7"},
                         "annotations": {"tickrun.io/symbols": "AAPL"},
                         "creationTimestamp": "2026-11-26T11:59:50Z",
                         "managedFields": MANAGED},
            "spec": {"suspend": False, "backoffLimit": 3, "template": {"spec": {
                "containers": [{"name": "runner", "env": [{"name": "A" * 50}] * 30}]}}},
            "status": status}


def pod(phase: str) -> dict[str, Any]:
    return {"metadata": {"name": "tickrun-run-7-abc", "labels": {"tickrun.io/run-id": "7"},
                         "creationTimestamp": "2026-11-26T11:59:51Z",
                         "managedFields": MANAGED},
            "spec": {"containers": [{"name": "runner", "env": [{"name": "B" * 50}] * 30}]},
            "status": {"phase": phase, "startTime": "2026-11-26T11:59:52Z",
                       "containerStatuses": [{"name": "runner", "state": {"running": {}}}]}}


def test_slim_keeps_what_the_controller_reads_and_drops_the_rest() -> None:
    slim_job = slim("jobs", job(conditions=[{"type": "Complete", "status": "True"}]))
    assert slim_job["metadata"] == {"name": "tickrun-run-7", "namespace": "ns", "uid": "u-1",
                                    "resourceVersion": "42",
                                    "labels": {"tickrun.io/run-id": "7"},
                                    "creationTimestamp": "2026-11-26T11:59:50Z"}
    assert slim_job["spec"] == {"suspend": False}
    slim_pod = slim("pods", pod("Running"))
    assert "spec" not in slim_pod and "managedFields" not in slim_pod["metadata"]
    assert len(json.dumps(slim_pod)) * 3 < len(json.dumps(pod("Running")))


def test_a_slim_object_reads_as_the_whole_one() -> None:
    for status in ({}, {"conditions": [{"type": "Complete", "status": "True"}]},
                   {"conditions": [{"type": "Failed", "status": "True", "reason": "X"}]}):
        for phase in ("Pending", "Running", "Succeeded"):
            whole = interpret(job(**status), [pod(phase)], now=NOW, unschedulable_timeout=5)
            kept = interpret(slim("jobs", job(**status)), [slim("pods", pod(phase))],
                             now=NOW, unschedulable_timeout=5)
            assert kept == whole
    suspended = job()
    suspended["spec"]["suspend"] = True
    assert interpret(slim("jobs", suspended), [], now=NOW,
                     unschedulable_timeout=5).phase == "suspended"


def pod_with(**status: Any) -> dict[str, Any]:
    whole = pod("Pending")
    whole["status"] = {"hostIP": "10.0.0.1", "podIP": "10.0.0.9", "qosClass": "Burstable",
                       **status}
    return whole


WAITING = {"name": "runner", "image": "tickrun/runner:dev", "imageID": "sha256:abc",
           "ready": False, "restartCount": 0}
POD_STORIES = [
    pod_with(phase="Pending", startTime="2026-11-26T11:50:00Z", containerStatuses=[
        {**WAITING, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "nope"}}}]),
    pod_with(phase="Pending", containerStatuses=[
        {**WAITING, "state": {"waiting": {"reason": "InvalidImageName", "message": "bad"}}}]),
    pod_with(phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes", "lastTransitionTime": "2026-11-26T11:50:00Z"}]),
    pod_with(phase="Failed", containerStatuses=[{**WAITING, "state": {"terminated": {
        "exitCode": 137, "reason": "OOMKilled", "containerID": "containerd://x",
        "startedAt": "2026-11-26T11:50:00Z", "finishedAt": "2026-11-26T11:55:00Z"}}}]),
    pod_with(phase="Running", containerStatuses=[{**WAITING, "state": {"running": {
        "startedAt": "2026-11-26T11:50:00Z"}}, "lastState": {"terminated": {
            "exitCode": 1, "reason": "Error", "message": "boom\nlast line"}}}]),
]


def test_a_slim_pod_tells_every_story_as_the_whole_one() -> None:
    failed = job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimit"}])
    for story in POD_STORIES:
        for owner in (job(), failed):
            whole = interpret(owner, [story], now=NOW, unschedulable_timeout=5)
            kept = interpret(slim("jobs", owner), [slim("pods", story)], now=NOW,
                             unschedulable_timeout=5)
            assert kept == whole, story
    deleting = pod("Running")
    deleting["metadata"]["deletionTimestamp"] = "2026-11-26T11:59:59Z"
    assert interpret(job(), [slim("pods", deleting)], now=NOW, unschedulable_timeout=5) == \
        interpret(job(), [deleting], now=NOW, unschedulable_timeout=5)


def test_last_changed_is_the_newest_managed_fields_time() -> None:
    assert last_changed(job()) == dt.datetime(2026, 11, 26, 11, 59, 58, tzinfo=dt.UTC)
    assert last_changed({"metadata": {}}) is None


def test_watch_events_are_cached_slim_and_their_lag_observed() -> None:
    seen: list[int] = []
    informer = RunInformer(None, None, None, seen.append)  # type: ignore[arg-type]
    def lag(suffix: str) -> float:
        return REGISTRY.get_sample_value(f"tickrun_controller_watch_lag_seconds{suffix}",
                                         {"resource": "pods"}) or 0.0

    count, total = lag("_count"), lag("_sum")
    fresh = pod("Running")
    fresh["metadata"]["managedFields"] = [{"manager": "kwok", "operation": "Update",
                                           "time": dt.datetime.now(dt.UTC).isoformat()}]
    informer._apply("pods", "ADDED", fresh)
    assert lag("_count") == count + 1 and 0 <= lag("_sum") - total < 5
    assert seen == [7]
    assert informer.pods(7) == [slim("pods", fresh)]
    # A change that is not the pod's phase may carry no newer time: not counted.
    informer._apply("pods", "MODIFIED", fresh)
    assert lag("_count") == count + 1
    done = pod("Succeeded")
    done["metadata"]["managedFields"] = fresh["metadata"]["managedFields"]
    informer._apply("pods", "MODIFIED", done)
    assert lag("_count") == count + 2
