"""Runs as Kubernetes Jobs on the real test cluster: the API creates them, controllers
admit and watch them, runner pods play them; stops, deletions, disruptions, limits,
controller failover and failures a person can read."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apiserver import ApiServer, wait_for, wait_status
from tests.cluster.helpers import exists, wait_until
from tests.cluster.stack import Stack
from tests.integration.test_api_runs import create, create_model, daily, intraday

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture
def c(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as client:
        yield client


def job(stack: Stack, run_id: int) -> Any:
    return stack.cluster.batch.read_namespaced_job(f"tickrun-run-{run_id}", stack.namespace)


def job_gone(stack: Stack, run_id: int) -> bool:
    return not exists(lambda: job(stack, run_id)) and not stack.cluster.core.list_namespaced_pod(
        stack.namespace, label_selector=f"tickrun.io/run-id={run_id}").items


def running_pod(stack: Stack, run_id: int) -> str:
    def find() -> str | None:
        pods = stack.cluster.core.list_namespaced_pod(
            stack.namespace, label_selector=f"tickrun.io/run-id={run_id}").items
        alive = [p for p in pods if p.status.phase == "Running"
                 and not p.metadata.deletion_timestamp]
        return alive[0].metadata.name if alive else None
    return str(wait_until(find, 90, f"a running pod of run {run_id}"))


def at_step(c: httpx.Client, run_id: int, step: int) -> None:
    wait_for(lambda: c.get(f"/v1/runs/{run_id}").json()["progress"]["step"] >= step, 120)


def test_a_daily_run_completes_and_kubectl_shows_it(stack: Stack, c: httpx.Client) -> None:
    run = create(c, daily(create_model(c, "k8s-daily")))
    name = f"tickrun-run-{run['id']}"
    submitted = job(stack, run["id"])
    assert submitted.metadata.labels["tickrun.io/run-id"] == str(run["id"])
    assert submitted.metadata.labels["tickrun.io/user-id"] == "user-a"
    assert submitted.metadata.labels["app.kubernetes.io/managed-by"] == "tickrun"
    done = wait_status(c, run["id"], {"completed", "failed"}, timeout=180)
    assert done["status"] == "completed", (done["status_reason"], done)
    assert done["result"]["steps_done"] == 83 and done["result"]["benchmark"]
    table = stack.kubectl("get", "jobs", "-L", "tickrun.io/run-id,tickrun.io/user-id")
    row = next(line for line in table.splitlines() if line.startswith(name))
    assert row.split()[-2:] == [str(run["id"]), "user-a"]
    described = stack.kubectl("describe", "job", name)
    assert "Admitted" in described
    lines = [json.loads(line) for line in stack.kubectl("logs", f"job/{name}").splitlines()
             if line.startswith("{")]
    assert lines and all(line["run_id"] == run["id"] for line in lines[1:])


def test_stop_mid_session_saves_partial_results_and_removes_the_job(
        stack: Stack, c: httpx.Client) -> None:
    run = create(c, intraday(create_model(c, "k8s-stop")))
    at_step(c, run["id"], 20)
    asked = time.monotonic()
    r = c.post(f"/v1/runs/{run['id']}/stop")
    assert r.status_code == 202 and r.json()["status"] == "stopping"
    stopped = wait_status(c, run["id"], {"stopped", "failed"}, timeout=60)
    took = time.monotonic() - asked
    assert stopped["status"] == "stopped", stopped
    assert stopped["status_reason"] in ("stopped (SIGTERM)", "stop requested")
    assert stopped["result"]["benchmark"]
    assert 20 <= stopped["progress"]["step"] < 390 and took < 40  # grace is 20 s
    trades = c.get(f"/v1/runs/{run['id']}/trades").json()
    assert len(trades) == stopped["result"]["trades"] + stopped["result"]["refused"]
    wait_until(lambda: job_gone(stack, run["id"]), 60, "the Job and its pods")
    print(f"stop request to stopped: {took:.2f}s")


def test_kubectl_delete_job_is_a_stop(stack: Stack, c: httpx.Client) -> None:
    run = create(c, intraday(create_model(c, "k8s-kubectl")))
    at_step(c, run["id"], 20)
    stack.kubectl("delete", "job", f"tickrun-run-{run['id']}", "--wait=false")
    stopped = wait_status(c, run["id"], {"stopped", "failed"}, timeout=60)
    assert stopped["status"] == "stopped", stopped
    # The runner saved it after SIGTERM, or saw `stopping` first and kept the reason.
    assert "Job deleted" in stopped["status_reason"] or "SIGTERM" in stopped["status_reason"]
    assert 20 <= stopped["result"]["steps_done"] < 390
    wait_until(lambda: job_gone(stack, run["id"]), 60, "the Job and its pods")


def test_a_deleted_pod_and_a_kill_9_resume_from_the_checkpoint(
        stack: Stack, c: httpx.Client) -> None:
    run = create(c, intraday(create_model(c, "k8s-disrupt")))
    rid = run["id"]
    at_step(c, rid, 30)
    stack.cluster.core.delete_namespaced_pod(running_pod(stack, rid), stack.namespace)
    at_step(c, rid, c.get(f"/v1/runs/{rid}").json()["progress"]["step"] + 30)
    running_pod(stack, rid)
    subprocess.run(["pkill", "-KILL", "-f", f"runner --run-id {rid}$"], check=True)
    done = wait_status(c, rid, {"completed", "failed", "stopped"}, timeout=240)
    assert done["status"] == "completed", done
    assert done["attempts"] == 3
    decisions = c.get(f"/v1/runs/{rid}/decisions", params={"limit": 5000}).json()
    assert [d["step"] for d in decisions] == list(range(390))
    trades = c.get(f"/v1/runs/{rid}/trades").json()
    keys = [(t["step"], t["seq"]) for t in trades]
    assert len(keys) == len(set(keys)), "a step traded twice"


def test_per_user_limit_two_of_five_run_and_the_rest_wait_suspended(
        stack: Stack, api: ApiServer) -> None:
    with api.client("limited-user") as c:
        model_id = create_model(c, "k8s-limits")
        runs = [create(c, daily(model_id, symbols=[s]))["id"]
                for s in ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG")]

        def statuses() -> list[str]:
            return [c.get(f"/v1/runs/{r}").json()["status"] for r in runs]
        seen_max = 0
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            now = statuses()
            active = sum(s in ("admitted", "running", "stopping") for s in now)
            seen_max = max(seen_max, active)
            assert active <= 2, now
            if now.count("queued") == 3 and active == 2:
                suspended = [job(stack, r).spec.suspend for r, s in zip(runs, now, strict=True)
                             if s == "queued"]
                assert suspended == [True, True, True]
            if all(s == "completed" for s in now):
                break
            time.sleep(0.3)
        assert statuses() == ["completed"] * 5 and seen_max == 2
        admitted = sorted((c.get(f"/v1/runs/{r}").json()["admitted_at"], r) for r in runs)
        # Oldest first among the runs whose Jobs the controller has seen (best-effort
        # FIFO, as Kueue's default): a Job seen a pass late (its create retried under
        # load, seen once as [5, 7, 6, 8, 9]) lets a younger run take the free slot.
        order = [r for _, r in admitted]
        assert order[0] == runs[0] and sorted(order) == runs, order


def test_controller_killed_and_failover_converge_without_double_admission(
        stack: Stack, c: httpx.Client) -> None:
    stack.start_controller("c2")
    model_id = create_model(c, "k8s-failover")
    first = create(c, intraday(model_id))
    at_step(c, first["id"], 10)
    stack.controllers["c1"].send_signal(signal.SIGKILL)  # the leader dies mid-run
    second = create(c, daily(model_id))
    done = wait_status(c, second["id"], {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed"
    assert "leadership acquired" in stack.controller_log("c2")
    stack.start_controller("c1")  # restarted; c2 keeps the lease
    c.post(f"/v1/runs/{first['id']}/stop")
    final = wait_status(c, first["id"], {"stopped", "completed"}, timeout=60)
    for run in (final, done):
        assert run["attempts"] == 1, run
        assert job_uid_events(stack, run["id"]) <= 1


def job_uid_events(stack: Stack, run_id: int) -> int:
    """How many times the run was admitted, from the Job's Events."""
    events = stack.cluster.core.list_namespaced_event(
        stack.namespace, field_selector=f"involvedObject.name=tickrun-run-{run_id}").items
    return sum(1 for e in events if e.reason == "Admitted")


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"TICKRUN_K8S_RUNNER_IMAGE": "tickrun/no-such-image:dev"}, "Err"),
    ({"TICKRUN_K8S_RESOURCES": '{"requests": {"cpu": "64", "memory": "64Mi"}}'},
     "Unschedulable"),
])
def test_unknown_image_and_impossible_requests_fail_with_the_reason(
        stack: Stack, overrides: dict[str, str], reason: str) -> None:
    with stack.api(**overrides) as bad, bad.client("failing-user") as c:
        run = create(c, daily(create_model(c, f"k8s-{reason.lower()}")))
        failed = wait_status(c, run["id"], {"failed", "completed"}, timeout=180)
    assert failed["status"] == "failed" and reason in failed["status_reason"], failed
    wait_until(lambda: job_gone(stack, run["id"]), 90, "the failed run's Job")


def quota_used(stack: Stack, name: str) -> bool:
    """The quota controller has counted what it limits: from then on it is enforced."""
    status = stack.cluster.core.read_namespaced_resource_quota(name, stack.namespace).status
    return bool(status and status.used)


def settled_jobs(stack: Stack, calm: float = 2.0) -> int:
    """How many Jobs the namespace holds, once none is being deleted and the set has not
    changed for `calm` seconds: the controller deletes the Jobs of the earlier tests'
    stuck runs just after it finishes them, and a quota counted with one of those would
    free a place as it goes."""
    def names() -> frozenset[str] | None:
        items = stack.cluster.batch.list_namespaced_job(stack.namespace).items
        if any(j.metadata.deletion_timestamp for j in items):
            return None
        return frozenset(j.metadata.name for j in items)

    def calm_set() -> frozenset[str] | None:
        before = names()
        time.sleep(calm)
        return before if before is not None and names() == before else None

    return len(wait_for(calm_set, 60, interval=0.5))


def test_a_quota_that_refuses_jobs_keeps_the_run_queued_until_it_frees(
        stack: Stack, c: httpx.Client) -> None:
    """A ResourceQuota refuses new Jobs while another run plays: that run finishes; the
    refused one waits queued with the quota's message (never admitted without a Job,
    never `stopped`), and plays once the quota frees."""
    model = create_model(c, "k8s-quota")
    first = create(c, daily(model))
    wait_until(lambda: exists(lambda: job(stack, first["id"])), 30, "the first run's Job")
    jobs = settled_jobs(stack)
    quota = {"apiVersion": "v1", "kind": "ResourceQuota",
             "metadata": {"name": "jobs"}, "spec": {"hard": {"count/jobs.batch": str(jobs)}}}
    stack.cluster.core.create_namespaced_resource_quota(stack.namespace, quota)
    try:
        wait_until(lambda: quota_used(stack, "jobs"), 30, "the quota's usage")
        refused = create(c, daily(model))
        waiting = wait_for(lambda: (lambda r: r if "exceeded quota" in (
            r.get("status_reason") or "") else None)(c.get(f"/v1/runs/{refused['id']}").json()),
            60)
        assert waiting["status"] == "queued", waiting
        done = wait_status(c, first["id"], {"completed", "failed", "stopped"}, timeout=180)
        assert done["status"] == "completed", done["status_reason"]
        assert c.get(f"/v1/runs/{refused['id']}").json()["status"] == "queued"
    finally:
        stack.cluster.core.delete_namespaced_resource_quota("jobs", stack.namespace)
    played = wait_status(c, refused["id"], {"completed", "failed", "stopped"}, timeout=180)
    assert played["status"] == "completed", played["status_reason"]
    assert played["status_reason"] is None and played["result"]["steps_done"] == 83
