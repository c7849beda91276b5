"""`python -m api --workers 2` as an operator runs it: connections spread over the
workers, a dead worker is replaced, SIGTERM stops them all, a port in use stops it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.api import api_workers
from tests.apiserver import wait_for
from tests.servers import free_port

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]
CONNECTIONS = 40
ESTABLISHED, LISTEN = "01", "0A"  # /proc/net/tcp's states


class Api:
    def __init__(self, tmp: Path, port: int) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")},
               "PYTHONPATH": str(REPO), "TICKRUN_AUTH_MODE": "dev", "TICKRUN_DEV_TOKEN": "t",
               "TICKRUN_DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite'}",
               "TICKRUN_MIGRATE_ON_START": "true", "TICKRUN_EXECUTOR": "local",
               "TICKRUN_EMBEDDED_CONTROLLER": "false",
               "TICKRUN_LOCAL_LOG_DIR": str(tmp / "logs")}
        self.port, self.log = port, tmp / "api.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "2"], env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"the API exited:\n{self.log.read_text()[-3000:]}"
        try:
            ok = httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200
        except httpx.TransportError:
            return False
        # Both listening: a worker still starting has not joined the port's sockets.
        workers = self.workers()
        return ok and len(workers) == 2 and all(
            tcp_sockets(pid, self.port, LISTEN) for pid in workers)

    def workers(self) -> list[int]:
        return api_workers(self.proc.pid)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    server = Api(tmp_path, free_port())
    try:
        wait_for(server.ready, timeout=60, interval=0.2)
        yield server
    finally:
        workers = server.workers()  # found through the supervisor: ask before it goes
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def tcp_sockets(pid: int, port: int, state: str) -> int:
    """How many of the process's TCP sockets on local `port` are in `state`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, inode = int(fields[1].split(":")[1], 16), fields[9]
            count += local_port == port and fields[3] == state and inode in inodes
    return count


def keep_alive_burst(port: int, n: int) -> list[socket.socket]:
    """`n` connections opened at once, each kept open after one request, as a load
    balancer's pool (or wrk) does."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for conn in conns:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    for conn in conns:
        conn.settimeout(10)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    return conns


def test_a_burst_of_keep_alive_connections_spreads_over_both_workers(api: Api) -> None:
    conns = keep_alive_burst(api.port, CONNECTIONS)
    try:
        held = [tcp_sockets(pid, api.port, ESTABLISHED) for pid in api.workers()]
    finally:
        for conn in conns:
            conn.close()
    assert sum(held) == CONNECTIONS
    # Spread by the kernel over both sockets (binomial: fewer than 8 of 40 on one side
    # is about 1 in 10^4); one shared socket let one worker take them all.
    assert min(held) >= 8, f"connections per worker: {held}"


def test_a_dead_worker_is_replaced_and_sigterm_stops_every_worker(api: Api) -> None:
    first = api.workers()
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: len(api.workers()) == 2 and first[0] not in api.workers()
             and api.ready(), timeout=60, interval=0.2)
    assert first[1] in api.workers()
    workers = api.workers()
    began = time.monotonic()
    api.proc.send_signal(signal.SIGTERM)
    assert api.proc.wait(30) == 0
    assert time.monotonic() - began < 15
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # reaped
    assert "exited (-9); starting another" in api.log.read_text()


def test_workers_end_with_their_supervisor_even_when_it_is_killed(api: Api) -> None:
    workers = api.workers()
    api.proc.kill()  # SIGKILL: no chance to pass anything on
    api.proc.wait()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers),
             timeout=30, interval=0.2)


def test_a_port_taken_by_another_process_stops_the_server(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = Api(tmp_path, taken.getsockname()[1])
        try:
            assert server.proc.wait(60) == 1
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
    log = server.log.read_text()
    assert "could not start; stopping" in log and "Address already in use" in log
