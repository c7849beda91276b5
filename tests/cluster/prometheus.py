"""A real Prometheus (Debian's package) for the cluster tests, scraping by address every
container port named `http` or `metrics` of one namespace's pods, each second.

Debian builds Prometheus without kubernetes_sd, so the pods are discovered here, from the
test cluster's API (list pods every half second), and handed to Prometheus through
file_sd: the same targets and labels (namespace, pod, component, run_id) kubernetes_sd
with the usual relabelling would give. The host routes to pod IPs over the CNI bridge."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from tests.servers import free_port

SCRAPED_PORTS = ("http", "metrics")


def scrape_config(targets: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "tickrun",
            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
        }],
    }


def pod_targets(core: client.CoreV1Api, namespace: str) -> list[dict[str, Any]]:
    """Every running pod's `http`/`metrics` ports, labelled as kubernetes_sd would."""
    found = []
    pods: list[Any] = core.list_namespaced_pod(namespace).items
    for pod in pods:
        if pod.status.phase not in ("Pending", "Running") or not pod.status.pod_ip:
            continue
        labels = pod.metadata.labels or {}
        for container in pod.spec.containers:
            for port in container.ports or []:
                if port.name not in SCRAPED_PORTS:
                    continue
                found.append({"targets": [f"{pod.status.pod_ip}:{port.container_port}"],
                              "labels": {"namespace": namespace, "pod": pod.metadata.name,
                                         "component": labels.get(
                                             "app.kubernetes.io/component", "run"),
                                         "run_id": labels.get("tickrun.io/run-id", "")}})
    return found


class Prometheus:
    def __init__(self, core: client.CoreV1Api, namespace: str, workdir: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: scripts/install-deps.sh")
        workdir.mkdir(parents=True, exist_ok=True)
        self.core, self.namespace = core, namespace
        self.targets_file = workdir / "targets.json"
        self._write_targets([])
        self._stop = threading.Event()
        self._discovery = threading.Thread(target=self._discover, daemon=True,
                                           name="pod-discovery")
        self._discovery.start()
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(self.targets_file)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1d", "--log.format=json"],
                stdout=log, stderr=log)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def _write_targets(self, targets: list[dict[str, Any]]) -> None:
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        os.replace(tmp, self.targets_file)

    def _discover(self) -> None:
        last: list[dict[str, Any]] = []
        while not self._stop.wait(0.5):
            try:
                targets = pod_targets(self.core, self.namespace)
            except Exception:  # the namespace is going away; keep the last targets
                continue
            if targets != last:
                self._write_targets(targets)
                last = targets

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if self.http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout}s")

    def targets(self) -> list[dict[str, Any]]:
        body = self.http.get("/api/v1/targets").raise_for_status().json()
        return list(body["data"]["activeTargets"])

    def query_range(self, expr: str, start: float, end: float,
                    step: float = 2) -> list[dict[str, Any]]:
        r = self.http.get("/api/v1/query_range",
                          params={"query": expr, "start": start, "end": end, "step": step})
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query failed: {expr}: {body.get('error', r.text)}")
        return list(body["data"]["result"])

    def has_data(self, expr: str, start: float, end: float) -> bool:
        """True when some series of the query has a value that is a number (a quantile
        over no observations is NaN: no data)."""
        return any(not math.isnan(float(value)) for series in self.query_range(expr, start, end)
                   for _, value in series["values"])

    def close(self) -> None:
        self._stop.set()
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
