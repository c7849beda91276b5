"""Helpers for the real-Kubernetes tests: the cluster's connection, polling waits that
fail with the namespace's events and logs, and a Job manifest like tickrun's own."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

CLUSTER_DIR = Path(__file__).resolve().parent
RUNNER_IMAGE = "tickrun/runner:dev"
API_IMAGE = "tickrun/api:dev"


def cluster_path(what: str) -> str:
    """One of the cluster's paths, from the same shell settings the scripts use."""
    out = subprocess.run([str(CLUSTER_DIR / "paths.sh"), what], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def runtime_images() -> set[str]:
    """The images containerd holds now, as the kubelet will find them for a pod.

    Not `node.status.images`: the kubelet refreshes that list on its own period, so an
    image imported a moment ago (a fresh machine's first `make test`) is not there yet.
    """
    out = subprocess.run(["ctr", "--address", cluster_path("containerd-sock"), "-n", "k8s.io",
                          "images", "ls", "-q"], check=True, capture_output=True, text=True,
                         timeout=30)
    return set(out.stdout.split())


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    core: client.CoreV1Api
    batch: client.BatchV1Api
    host_address: str
    """The host as pods see it (the CNI bridge's gateway): PostgreSQL, Redis..."""
    runner_image: str = RUNNER_IMAGE
    api_image: str = API_IMAGE


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.25, diagnose: Callable[[], str] | None = None) -> Any:
    """Poll until `predicate()` is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = diagnose() if diagnose else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{detail}")
        time.sleep(interval)


def exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def diagnose(cluster: Cluster, namespace: str) -> str:
    """The namespace's events and pods' logs, for failure messages."""
    lines = ["events:"]
    for ev in cluster.core.list_namespaced_event(namespace).items:
        lines.append(f"  {ev.involved_object.kind}/{ev.involved_object.name}: "
                     f"{ev.reason}: {ev.message}")
    for pod in cluster.core.list_namespaced_pod(namespace).items:
        lines.append(f"pod {pod.metadata.name}: {pod.status.phase} "
                     f"{pod.status.container_statuses}")
        lines.append(pod_logs(cluster, namespace, pod.metadata.name))
    return "\n".join(lines)


def pod_logs(cluster: Cluster, namespace: str, pod: str) -> str:
    try:
        return str(cluster.core.read_namespaced_pod_log(pod, namespace))
    except ApiException as exc:
        return f"(no logs: {exc.status} {exc.reason})"


def job_condition(job: client.V1Job, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])


def wait_for_job_condition(cluster: Cluster, namespace: str, name: str, kind: str = "Complete",
                           timeout: float = 120) -> client.V1Job:
    """Wait for a Job condition (Complete, Failed, SuccessCriteriaMet...); fail early if
    the Job fails while waiting for something else."""
    def check() -> client.V1Job | None:
        job = cluster.batch.read_namespaced_job_status(name, namespace)
        if job_condition(job, kind):
            return job
        if kind != "Failed" and job_condition(job, "Failed"):
            pytest.fail(f"job {name} failed\n{diagnose(cluster, namespace)}")
        return None
    return wait_until(check, timeout, f"job {name} {kind}",
                      diagnose=lambda: diagnose(cluster, namespace))  # type: ignore[no-any-return]


def job_pods(cluster: Cluster, namespace: str, job: str) -> list[client.V1Pod]:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    return list(pods.items)


def wait_for_pod(cluster: Cluster, namespace: str, job: str, phase: str = "Running",
                 timeout: float = 120) -> client.V1Pod:
    """Wait until one of the Job's pods is in `phase`."""
    def check() -> client.V1Pod | None:
        return next((p for p in job_pods(cluster, namespace, job) if p.status.phase == phase),
                    None)
    return wait_until(check, timeout, f"a pod of job {job} {phase}",  # type: ignore[no-any-return]
                      diagnose=lambda: diagnose(cluster, namespace))


def wait_gone(read: Callable[[], Any], timeout: float, what: str) -> None:
    wait_until(lambda: not exists(read), timeout, f"{what} to be gone")


def job_manifest(name: str, image: str, command: list[str] | None = None,
                 args: list[str] | None = None, *, env: dict[str, str] | None = None,
                 grace_seconds: int = 30, ttl_seconds: int | None = None,
                 backoff_limit: int = 0, service_account_token: bool = False,
                 memory_limit: str = "512Mi") -> client.V1Job:
    """A Job like the ones tickrun makes: non-root, read-only root filesystem, no
    capabilities, seccomp RuntimeDefault, no service account token, image present."""
    container = client.V1Container(
        name="main", image=image, image_pull_policy="IfNotPresent", command=command,
        args=args, env=[client.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()],
        security_context=client.V1SecurityContext(
            run_as_non_root=True, run_as_user=10001, allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=client.V1Capabilities(drop=["ALL"])),
        volume_mounts=[client.V1VolumeMount(name="tmp", mount_path="/tmp")],
        resources=client.V1ResourceRequirements(requests={"cpu": "50m", "memory": "64Mi"},
                                                limits={"memory": memory_limit}))
    pod = client.V1PodSpec(
        restart_policy="Never", containers=[container],
        termination_grace_period_seconds=grace_seconds,
        automount_service_account_token=service_account_token,
        security_context=client.V1PodSecurityContext(
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault")),
        volumes=[client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())])
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/name": "tickrun-test"}),
        spec=client.V1JobSpec(
            backoff_limit=backoff_limit, ttl_seconds_after_finished=ttl_seconds,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app.kubernetes.io/name": "tickrun-test"}),
                spec=pod)))
