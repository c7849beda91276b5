"""What Kubernetes says about a run's Job and pods, in words a person reads.

Pure functions over the raw objects the watches deliver, so every reason (OOMKilled,
ImagePullBackOff, Unschedulable, DeadlineExceeded, BackoffLimitExceeded, exit codes)
is unit-tested without a cluster and proven again on the real one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller.workload import WorkloadState

# Waiting reasons that cannot fix themselves: the run fails with them at once.
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons the kubelet retries, which a registry or a busy containerd may clear
# (a pull that timed out, "context deadline exceeded" creating the container): the run
# fails with them only once its pod has been stuck on them for the start timeout.
STUCK_WAITING = frozenset({"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                           "CreateContainerError"})


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []
            if c.get("status") == "True"}


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "terminated" in state:
            return dict(state["terminated"])
        last = cs.get("lastState") or {}
        if "terminated" in last:
            return dict(last["terminated"])
    return None


def _waiting_reason(pod: dict[str, Any], now: dt.datetime, start_timeout: float) -> str | None:
    """Why the pod's container cannot start, once that is final: a fatal reason at once,
    a retried one after `start_timeout` seconds from the kubelet taking the pod."""
    status = pod.get("status") or {}
    started = status.get("startTime")
    stuck_for = (now - _time(started)).total_seconds() if started else 0.0
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING or (reason in STUCK_WAITING and stuck_for >= start_timeout):
            message = waiting.get("message") or ""
            return f"{reason}: {message}".strip(": ")[:500]
    return None


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _unschedulable_since(pod: dict[str, Any]) -> tuple[dt.datetime, str] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and \
                c.get("reason") == "Unschedulable":
            return _time(c["lastTransitionTime"]), str(c.get("message") or "")
    return None


def pod_failure_reason(pod: dict[str, Any]) -> tuple[str, int | None] | None:
    term = _terminated(pod)
    if term is None:
        return None
    code = term.get("exitCode")
    if term.get("reason") == "OOMKilled":
        return "OOMKilled: the runner exceeded its memory limit", code
    if code not in (None, 0):
        message = (term.get("message") or "").strip().splitlines()[-1:] or [""]
        return f"runner exited with code {code} {message[0]}".strip()[:500], code
    return None


def pod_alive(pod: dict[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Pending", "Running") or (
        phase not in ("Succeeded", "Failed") and pod.get("metadata", {}).get("deletionTimestamp")
        is not None)


def interpret(job: dict[str, Any] | None, pods: list[dict[str, Any]], *,
              now: dt.datetime, unschedulable_timeout: float,
              start_timeout: float = 120.0) -> WorkloadState:
    alive = any(pod_alive(p) for p in pods)
    if job is None:
        return WorkloadState("gone", pod_alive=alive)
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return WorkloadState("running" if alive else "pending", "Job deleted",
                             pod_alive=alive, deleting=True)
    conditions = _conditions(job)
    newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)
    if "Failed" in conditions:
        cond = conditions["Failed"]
        reason = cond.get("reason") or "Failed"
        detail = pod_failure_reason(newest) if newest else None
        text = f"{reason}: {detail[0]}" if detail else f"{reason}: {cond.get('message', '')}"
        return WorkloadState("failed", text.strip(": ")[:500],
                             detail[1] if detail else None, alive)
    if "Complete" in conditions:
        return WorkloadState("succeeded", pod_alive=alive)
    if (job.get("spec") or {}).get("suspend"):
        return WorkloadState("suspended", pod_alive=alive)
    if newest is not None:
        fatal = _waiting_reason(newest, now, start_timeout)
        if fatal:
            return WorkloadState("failed", fatal, None, alive)
        pending = _unschedulable_since(newest)
        if pending and (now - pending[0]).total_seconds() >= unschedulable_timeout:
            return WorkloadState("failed", f"Unschedulable: {pending[1]}"[:500], None, alive)
        if (newest.get("status") or {}).get("phase") == "Running":
            return WorkloadState("running", pod_alive=True)
    return WorkloadState("pending", pod_alive=alive)
