"""Reasons a person reads, from the raw Job and Pod objects Kubernetes sends."""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller.kubernetes.status import interpret

NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def job(suspend: bool = False, **condition: str) -> dict[str, Any]:
    conditions = [{"type": condition["type"], "status": "True",
                   "reason": condition.get("reason"), "message": condition.get("message", "")}
                  ] if condition else []
    return {"metadata": {"name": "tickrun-run-1"}, "spec": {"suspend": suspend},
            "status": {"conditions": conditions}}


def pod(phase: str = "Running", *, state: dict[str, Any] | None = None,
        conditions: list[dict[str, Any]] | None = None, deleting: bool = False
        ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "creationTimestamp": "2025-01-01T11:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T11:59:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": conditions or [],
                                          "containerStatuses": [{"state": state or {}}]}}


def state(j: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Any:
    return interpret(j, pods, now=NOW, unschedulable_timeout=60, start_timeout=90)


def test_suspended_running_and_complete() -> None:
    assert state(job(suspend=True), []).phase == "suspended"
    assert state(job(), [pod("Pending")]).phase == "pending"
    assert state(job(), [pod("Running")]).phase == "running"
    assert state(job(type="Complete"), [pod("Succeeded")]).phase == "succeeded"


def test_oom_killed_is_named() -> None:
    oom = pod("Failed", state={"terminated": {"reason": "OOMKilled", "exitCode": 137}})
    s = state(job(type="Failed", reason="BackoffLimitExceeded"), [oom])
    assert s.phase == "failed" and s.exit_code == 137
    assert s.reason == "BackoffLimitExceeded: OOMKilled: the runner exceeded its memory limit"


def test_deadline_and_exit_codes() -> None:
    s = state(job(type="Failed", reason="DeadlineExceeded",
                  message="Job was active longer than specified deadline"), [])
    assert s.reason == "DeadlineExceeded: Job was active longer than specified deadline"
    crashed = pod("Failed", state={"terminated": {"exitCode": 78, "message": "bad\nrun spec"}})
    s = state(job(type="Failed", reason="PodFailurePolicy"), [crashed])
    assert s.reason == "PodFailurePolicy: runner exited with code 78 run spec"


def waiting(reason: str, seconds_ago: int, message: str = "") -> dict[str, Any]:
    """A pod the kubelet took `seconds_ago`, its container waiting with `reason`."""
    stuck = pod("Pending", state={"waiting": {"reason": reason, "message": message}})
    started = NOW - dt.timedelta(seconds=seconds_ago)
    stuck["status"]["startTime"] = started.isoformat().replace("+00:00", "Z")
    return stuck


def test_an_image_that_cannot_exist_fails_without_waiting() -> None:
    s = state(job(), [waiting("InvalidImageName", 1, "couldn't parse image name")])
    assert s.phase == "failed" and s.reason.startswith("InvalidImageName")


def test_a_start_the_kubelet_retries_fails_only_after_the_start_timeout() -> None:
    """A busy containerd ("context deadline exceeded") or a registry blip clears itself;
    a missing image does not (timeout here 90 s)."""
    for reason in ("CreateContainerError", "ErrImagePull", "ImagePullBackOff",
                   "CreateContainerConfigError"):
        assert state(job(), [waiting(reason, 30, "context deadline exceeded")]
                     ).phase == "pending", reason
        s = state(job(), [waiting(reason, 95, 'Back-off pulling image "nope"')])
        assert s.phase == "failed" and s.reason == f'{reason}: Back-off pulling image "nope"'


def test_unschedulable_fails_after_the_timeout() -> None:
    def unschedulable(minutes_ago: int) -> dict[str, Any]:
        since = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
        return pod("Pending", conditions=[{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "lastTransitionTime": since, "message": "0/1 nodes are available: "
                                                    "1 Insufficient memory."}])
    assert state(job(), [unschedulable(0)]).phase == "pending"
    s = state(job(), [unschedulable(5)])
    assert s.phase == "failed" and "Insufficient memory" in str(s.reason)


def test_a_gone_job_with_a_terminating_pod_is_still_alive() -> None:
    assert state(None, [pod("Running", deleting=True)]).pod_alive
    assert not state(None, [pod("Succeeded")]).pod_alive
    assert state(None, []).phase == "gone"
