"""The websocket side both live-stream fakes share: a `websockets` server on a free local
port, in a thread with its own asyncio loop, that the test drives from its own thread.

A test pushes messages when it says (`broadcast`), cuts every connection off without a
closing handshake (`drop`: what a network failure looks like, close code 1006 on the
client's side), and waits for what the clients did (`wait_until`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

T = TypeVar("T")


@dataclass
class Session:
    """One client connection as the fake sees it."""

    ws: ServerConnection
    path: str
    authenticated: bool = False
    subscriptions: set[str] = field(default_factory=set)
    received: list[Any] = field(default_factory=list)  # every decoded message (auth: no)


class FakeStreamServer:
    """Subclasses implement `_session` (one connection's protocol) and the encoding."""

    name = "stream"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host  # the test cluster's pods reach the host at its bridge address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"fake-{self.name}", daemon=True)
        self._server: Server | None = None
        self._changed = threading.Condition()
        self.sessions: list[Session] = []
        self.connections = 0  # connections accepted, over the fake's life
        self.auth_failures = 0
        self.port = 0

    # -- the test's side ---------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop(self) -> int:
        """Cut every open connection off (no close frame); the number cut."""
        return self._call(self._drop())

    def close_all(self, code: int = 1000, reason: str = "") -> int:
        """Close every open connection cleanly (a close frame, `code`); the number closed."""
        return self._call(self._close_all(code, reason))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the fake {self.name} stream waited {timeout}s")
                self._changed.wait(left)

    def subscribed(self, topic: str) -> int:
        """How many open connections are subscribed to `topic`."""
        return sum(1 for s in self.sessions if topic in s.subscriptions)

    # -- the server's side (its loop) -------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    async def _listen(self) -> None:
        self._server = await serve(self._handle, self.host, 0, max_size=2**20)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut(self) -> None:
        assert self._server is not None
        # Cut the connections first: a client that stopped reading (a refused key) would
        # hold a closing handshake for its whole close timeout.
        await self._drop()
        self._server.close()
        await self._server.wait_closed()

    async def _drop(self) -> int:
        open_sessions = [s for s in self.sessions if s.ws.transport is not None]
        for session in open_sessions:
            session.ws.transport.abort()
        return len(open_sessions)

    async def _close_all(self, code: int, reason: str) -> int:
        open_sessions = list(self.sessions)
        for session in open_sessions:
            await session.ws.close(code, reason)
        return len(open_sessions)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        session = Session(ws, ws.request.path)
        self.connections += 1
        self.sessions.append(session)
        self._notify()
        try:
            await self._session(session)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.remove(session)
            self._notify()

    async def _session(self, session: Session) -> None:
        raise NotImplementedError

    async def _each(self, send: Callable[[Session], Awaitable[bool]]) -> int:
        """`send` to every open session (it says whether the message was for it); the
        number reached."""
        reached = 0
        for session in list(self.sessions):
            with contextlib.suppress(ConnectionClosed):
                reached += await send(session)
        return reached
