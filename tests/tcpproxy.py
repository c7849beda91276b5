"""A TCP proxy on loopback whose connections a test can cut: a dropped connection in the
middle of a stream, as a flaky network or a restarted load balancer drops it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._accepted = threading.Condition(self._lock)
        threading.Thread(target=self._accept, daemon=True, name="tcpproxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_connections(self, count: int, timeout: float) -> bool:
        with self._accepted:
            return self._accepted.wait_for(lambda: self.connections >= count, timeout)

    def cut(self) -> int:
        """End every open connection, both sides; new ones are still let through. Only
        shut down here: the pumps close their sockets once both directions stopped, so a
        closed socket's number, reused by a new connection, never receives old bytes."""
        with self._lock:
            pairs, self._open = self._open, []
        for pair in pairs:
            for sock in pair:
                _shutdown(sock)
        return len(pairs)

    def close(self) -> None:
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            pair = (client, server)
            with self._accepted:
                self._open.append(pair)
                self.connections += 1
                self._accepted.notify_all()
            pumps = [threading.Thread(target=_pump, args=(src, dst), daemon=True)
                     for src, dst in (pair, pair[::-1])]
            for pump in pumps:
                pump.start()
            threading.Thread(target=_close_after, args=(pumps, pair), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    _shutdown(dst)


def _close_after(pumps: list[threading.Thread], pair: tuple[socket.socket, ...]) -> None:
    for pump in pumps:
        pump.join()
    for sock in pair:
        sock.close()


def _shutdown(sock: socket.socket) -> None:
    with suppress(OSError):  # the peer went first
        sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def tcp_proxy(upstream_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
