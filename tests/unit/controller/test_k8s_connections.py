"""The controller's client keeps a connection per concurrent admission call: a pool
smaller than the admission's threads discards connections and opens new ones."""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client

from controller.kubernetes.api import api_client
from controller.kubernetes.settings import KubernetesSettings
from controller.reconciler import ADMIT_CONCURRENCY


class _JobServer(BaseHTTPRequestHandler):
    """Answers any GET with a small Job after a pause, so calls overlap; records the
    client port of every request (one per TCP connection)."""
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server speaks
    ports: set[int] = set()
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.ports.add(self.client_address[1])
        threading.Event().wait(0.05)
        body = json.dumps({"kind": "Job", "metadata": {"name": "j"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[str]:
    _JobServer.ports = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "t", "user": {"token": "t"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    yield str(path)
    server.shutdown()


def test_a_burst_of_admission_calls_reuses_its_connections(
        kubeconfig: str, caplog: pytest.LogCaptureFixture) -> None:
    batch = client.BatchV1Api(api_client(KubernetesSettings(kubeconfig=kubeconfig)))

    def read(_: int) -> str:
        return str(batch.read_namespaced_job("j", "ns").metadata.name)

    with caplog.at_level(logging.WARNING, logger="urllib3"), \
            cf.ThreadPoolExecutor(ADMIT_CONCURRENCY) as pool:
        for _burst in range(3):
            assert list(pool.map(read, range(ADMIT_CONCURRENCY))) == ["j"] * ADMIT_CONCURRENCY
    assert "Connection pool is full" not in caplog.text
    # Each burst's calls overlap, so the first opens one connection per thread; the
    # later bursts reuse them all.
    assert len(_JobServer.ports) <= ADMIT_CONCURRENCY
