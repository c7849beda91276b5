"""tickrun on the test cluster: the API (on the host, Kubernetes executor), controllers as
real `python -m controller` processes, runner pods reaching PostgreSQL and Redis on the
host through Secrets, exactly as a deployment wires them."""

from __future__ import annotations

import base64
import glob
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client

from controller.kubernetes.executor import KubernetesExecutor
from controller.kubernetes.settings import KubernetesSettings
from core.store import open_store
from tests.apiserver import ApiServer, Backend
from tests.cluster.helpers import Cluster
from tests.servers import Postgres, Redis, free_port

RUNNER_ENV = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.05",
              "TICKRUN_RUNNER_STOP_INTENT_WAIT_SECONDS": "3"}


def faketime_library() -> str:
    """libfaketime's multithreaded build (Debian's faketime package, scripts/install-deps.sh)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is not installed: scripts/install-deps.sh installs faketime"
    return found[0]


class Stack:
    def __init__(self, cluster: Cluster, namespace: str, pg: Postgres, redis: Redis,
                 log_dir: Path) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.database = f"k_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg.url(database="postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.database}")
        self.db_url = pg.url(database=self.database)
        store = open_store(self.db_url, pool_size=1)
        store.migrate()
        store.close()
        self.prefix = f"k{uuid.uuid4().hex[:8]}"
        self.backend = Backend(self.db_url, redis.url(), self.prefix, log_dir)
        self._secret("tickrun-database", pg.url(host=cluster.host_address,
                                                 database=self.database))
        self._secret("tickrun-redis", redis.url(host=cluster.host_address))
        self.controllers: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = log_dir

    def _secret(self, name: str, url: str) -> None:
        self.cluster.core.create_namespaced_secret(self.namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            data={"url": base64.b64encode(url.encode()).decode()}))

    def k8s_env(self, **overrides: Any) -> dict[str, str]:
        runner_env = {**RUNNER_ENV, "TICKRUN_REDIS_KEY_PREFIX": self.prefix}
        env = {"TICKRUN_K8S_NAMESPACE": self.namespace,
               "TICKRUN_K8S_KUBECONFIG": str(self.cluster.kubeconfig),
               "TICKRUN_K8S_RUNNER_IMAGE": self.cluster.runner_image,
               "TICKRUN_K8S_RUNNER_ENV": json.dumps(runner_env),
               "TICKRUN_K8S_TERMINATION_GRACE_PERIOD_SECONDS": "20",
               "TICKRUN_K8S_LEASE_DURATION_SECONDS": "6",
               "TICKRUN_K8S_LEASE_RENEW_SECONDS": "1",
               "TICKRUN_RESYNC_SECONDS": "10",
               "TICKRUN_K8S_UNSCHEDULABLE_TIMEOUT_SECONDS": "5",
               "TICKRUN_K8S_CONTAINER_START_TIMEOUT_SECONDS": "10",
               "TICKRUN_K8S_RESOURCES": json.dumps({"requests": {"cpu": "10m",
                                                                 "memory": "64Mi"},
                                                    "limits": {"memory": "768Mi"}})}
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def executor(self, **overrides: Any) -> KubernetesExecutor:
        saved = dict(os.environ)
        os.environ.update(self.k8s_env(**overrides))
        try:
            return KubernetesExecutor(KubernetesSettings(), component="tickrun-api")
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @contextmanager
    def api(self, **overrides: Any) -> Iterator[ApiServer]:
        server = ApiServer(self.backend, executor=self.executor(**overrides),
                           reconcile=False).start()
        try:
            yield server
        finally:
            server.stop()

    def start_controller(self, identity: str, per_user: int = 2,
                         clock_offset: float | None = None,
                         **overrides: Any) -> subprocess.Popen[bytes]:
        """A controller process; with `clock_offset`, its wall clock runs that many
        seconds ahead (libfaketime; monotonic time stays real)."""
        env = {**self.backend.runner_env(), **self.k8s_env(**overrides),
               "TICKRUN_PER_USER_LIMIT": str(per_user), "POD_NAME": identity}
        if clock_offset is not None:
            # The library itself, not the `faketime` wrapper: a signal must reach the
            # controller, not a parent that would leave it running.
            env.update(LD_PRELOAD=faketime_library(), FAKETIME=f"{clock_offset:+.3f}s",
                       FAKETIME_DONT_FAKE_MONOTONIC="1")
        log = open(self.log_dir / f"controller-{identity}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "controller", "--metrics-port",
                                 str(free_port())], env=env, stdout=log, stderr=log)
        self.controllers[identity] = proc
        return proc

    def stop_controllers(self, sig: int = signal.SIGTERM) -> None:
        for proc in self.controllers.values():
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.controllers.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.controllers.clear()

    def controller_log(self, identity: str) -> str:
        return (self.log_dir / f"controller-{identity}.log").read_text(errors="replace")

    def kubectl(self, *args: str) -> str:
        from tests.cluster.helpers import cluster_path

        out = subprocess.run([f"{cluster_path('bin')}/kubectl",
                              f"--kubeconfig={self.cluster.kubeconfig}", "-n", self.namespace,
                              *args], check=True, capture_output=True, text=True, timeout=60)
        return out.stdout

    def close(self, pg: Postgres) -> None:
        self.stop_controllers()
        with psycopg.connect(pg.url(database="postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
