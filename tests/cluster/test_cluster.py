"""The test cluster does what tickrun relies on: Jobs of our images run to completion,
deletion delivers SIGTERM inside the container, the garbage collector and the TTL
controller clean up, and pods reach PostgreSQL and Redis on the host."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client, watch

from tests.cluster.helpers import (
    Cluster,
    diagnose,
    job_manifest,
    job_pods,
    pod_logs,
    wait_for_job_condition,
    wait_for_pod,
    wait_gone,
    wait_until,
)
from tests.servers import Postgres, Redis

pytestmark = pytest.mark.cluster


def test_node_is_ready_and_reports_its_version(cluster: Cluster) -> None:
    nodes = cluster.core.list_node().items
    assert len(nodes) == 1
    node = nodes[0]
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert node.status.node_info.kubelet_version.startswith("v1.")
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    version = client.VersionApi(cluster.api).get_code()
    assert version.git_version == node.status.node_info.kubelet_version


def test_runner_image_job_completes(cluster: Cluster, namespace: str) -> None:
    name = "runner-version"
    cluster.batch.create_namespaced_job(
        namespace, job_manifest(name, cluster.runner_image, args=["--version"]))
    wait_for_job_condition(cluster, namespace, name, "Complete")
    (pod,) = job_pods(cluster, namespace, name)
    assert pod.status.phase == "Succeeded"
    (status,) = pod.status.container_statuses
    assert status.state.terminated.exit_code == 0
    assert status.state.terminated.started_at is not None
    assert "tickrun-runner" in pod_logs(cluster, namespace, pod.metadata.name)


class _Listener:
    """A TCP listener on the host that pods report to, one line per connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                for line in data.decode().splitlines():
                    self.lines.append((time.monotonic(), line))

    def received(self, text: str) -> float | None:
        return next((t for t, line in self.lines if line == text), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    lst = _Listener()
    yield lst
    lst.close()


# Reports "started", then on SIGTERM "sigterm", finishes its work and exits 0.
_TRAP_SIGTERM = """
import os, signal, socket, sys, time
host, port = os.environ["REPORT_HOST"], int(os.environ["REPORT_PORT"])
def report(line):
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall((line + "\\n").encode())
def on_term(signum, frame):
    report("sigterm")
    print("got SIGTERM, saving and exiting", flush=True)
    time.sleep(1)
    report("clean-exit")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
report("started")
while True:
    time.sleep(0.2)
"""


def test_foreground_delete_delivers_sigterm_and_clean_exit(
        cluster: Cluster, namespace: str, listener: _Listener) -> None:
    name = "sigterm"
    grace = 20
    cluster.batch.create_namespaced_job(namespace, job_manifest(
        name, cluster.runner_image, command=["python", "-c", _TRAP_SIGTERM], grace_seconds=grace,
        env={"REPORT_HOST": cluster.host_address, "REPORT_PORT": str(listener.port)}))
    pod = wait_for_pod(cluster, namespace, name, "Running")
    wait_until(lambda: listener.received("started"), 60, "the pod to report 'started'",
               diagnose=lambda: diagnose(cluster, namespace))

    # Watch the pod to the end: its last status must show a clean exit (code 0).
    exit_codes: list[int] = []
    pods_watch = watch.Watch()

    def follow() -> None:
        for event in pods_watch.stream(
                cluster.core.list_namespaced_pod, namespace,
                field_selector=f"metadata.name={pod.metadata.name}", timeout_seconds=90):
            for st in event["object"].status.container_statuses or []:
                if st.state.terminated is not None:
                    exit_codes.append(st.state.terminated.exit_code)
            if event["type"] == "DELETED":
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    deleted_at = time.monotonic()
    cluster.batch.delete_namespaced_job(
        name, namespace, body=client.V1DeleteOptions(propagation_policy="Foreground"))

    got_term = wait_until(lambda: listener.received("sigterm"), grace,
                          "SIGTERM inside the container",
                          diagnose=lambda: diagnose(cluster, namespace))
    clean = wait_until(lambda: listener.received("clean-exit"), grace,
                       "the clean exit after SIGTERM")
    assert got_term - deleted_at < grace
    assert clean - deleted_at < grace
    wait_gone(lambda: cluster.batch.read_namespaced_job(name, namespace), 60, f"job {name}")
    assert not job_pods(cluster, namespace, name)
    follower.join(30)
    pods_watch.stop()
    assert exit_codes and set(exit_codes) == {0}, f"container exit codes: {exit_codes}"


def test_garbage_collector_deletes_the_jobs_pods(cluster: Cluster, namespace: str) -> None:
    name = "orphaned"
    cluster.batch.create_namespaced_job(namespace, job_manifest(
        name, cluster.runner_image, command=["python", "-c", "import time; time.sleep(600)"],
        grace_seconds=2))
    pod = wait_for_pod(cluster, namespace, name, "Running")
    owner = pod.metadata.owner_references[0]
    assert (owner.kind, owner.name) == ("Job", name)
    # Background propagation: the Job goes at once, the garbage collector removes its pods.
    cluster.batch.delete_namespaced_job(
        name, namespace, body=client.V1DeleteOptions(propagation_policy="Background"))
    wait_gone(lambda: cluster.batch.read_namespaced_job(name, namespace), 30, f"job {name}")
    wait_gone(lambda: cluster.core.read_namespaced_pod(pod.metadata.name, namespace), 60,
              f"pod {pod.metadata.name}")


def test_ttl_after_finished_removes_the_job(cluster: Cluster, namespace: str) -> None:
    name = "short-lived"
    cluster.batch.create_namespaced_job(namespace, job_manifest(
        name, cluster.runner_image, command=["python", "-c", "print('done')"], ttl_seconds=5))
    # 5 s, not 1: with 1 the Job could be gone before a poll saw it Complete (a 404).
    wait_for_job_condition(cluster, namespace, name, "Complete")
    wait_gone(lambda: cluster.batch.read_namespaced_job(name, namespace), 60, f"job {name}")
    wait_until(lambda: not job_pods(cluster, namespace, name), 60, "the job's pods to be gone")


_REACH_SERVICES = """
import os, psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
    print("postgres says", conn.execute("SELECT 40 + 2").fetchone()[0])
r = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10)
r.set(os.environ["REDIS_KEY"], "from-the-pod")
print("redis ok")
"""


def test_pods_reach_postgres_and_redis_on_the_host(
        cluster: Cluster, namespace: str, postgres_server: Postgres, redis_server: Redis) -> None:
    name = "reach-services"
    key = f"cluster-test-{uuid.uuid4().hex[:8]}"
    cluster.batch.create_namespaced_job(namespace, job_manifest(
        name, cluster.runner_image, command=["python", "-c", _REACH_SERVICES], env={
            "DATABASE_URL": postgres_server.url(host=cluster.host_address),
            "REDIS_URL": redis_server.url(host=cluster.host_address),
            "REDIS_KEY": key}))
    wait_for_job_condition(cluster, namespace, name, "Complete")
    (pod,) = job_pods(cluster, namespace, name)
    assert "postgres says 42" in pod_logs(cluster, namespace, pod.metadata.name)
    host_redis = redis.Redis.from_url(redis_server.url())
    try:
        assert host_redis.get(key) == b"from-the-pod"
    finally:
        host_redis.close()


_IN_CLUSTER_API = """
import json, os, socket, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
print("dns", socket.gethostbyname("kubernetes.default.svc.cluster.local"))
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
for url in (f"https://{host}:{port}/version", "https://kubernetes.default.svc/version"):
    req = urllib.request.Request(url, headers={
        "Authorization": "Bearer " + open(f"{sa}/token").read()})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        print("in-cluster", url, json.load(resp)["gitVersion"])
"""


def test_pods_reach_the_api_server_through_its_service(cluster: Cluster, namespace: str) -> None:
    """What in-cluster clients (the controller) do: the kubernetes Service by cluster IP
    (kube-proxy) and by name (cluster DNS), the API server's certificate, a service
    account token."""
    name = "in-cluster-api"
    cluster.batch.create_namespaced_job(namespace, job_manifest(
        name, cluster.runner_image, command=["python", "-c", _IN_CLUSTER_API],
        service_account_token=True))
    wait_for_job_condition(cluster, namespace, name, "Complete")
    (pod,) = job_pods(cluster, namespace, name)
    version = client.VersionApi(cluster.api).get_code().git_version
    logs = pod_logs(cluster, namespace, pod.metadata.name)
    assert "dns 10.96.0.1" in logs
    assert f"in-cluster https://10.96.0.1:443/version {version}" in logs
    assert f"in-cluster https://kubernetes.default.svc/version {version}" in logs


def test_a_pod_over_its_memory_limit_is_oom_killed(cluster: Cluster, namespace: str) -> None:
    """The kubelet enforces memory limits (cgroup v1 here) and reports OOMKilled, the
    reason tickrun shows for such a run."""
    name = "oom"
    cluster.batch.create_namespaced_job(namespace, job_manifest(
        name, cluster.runner_image, memory_limit="96Mi",
        command=["python", "-c", "b = [bytearray(1 << 20) for _ in range(400)]"]))
    wait_for_job_condition(cluster, namespace, name, "Failed")
    (pod,) = job_pods(cluster, namespace, name)
    (status,) = pod.status.container_statuses
    assert status.state.terminated.reason == "OOMKilled", status.state.terminated
    assert status.state.terminated.exit_code == 137
