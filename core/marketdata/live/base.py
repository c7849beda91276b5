"""The live bar feed: a provider's real-time stream of minute bars, as events.

A feed runs the official client's websocket loop in a thread of its own (each client
owns an asyncio loop there) and hands what it receives to the consumer through a
thread-safe queue:

- `LiveBar(symbol, bar)`: a closed minute bar; `bar.time` is the minute's start (UTC),
  its prices Decimals made from the wire's text (or, where the wire carries binary
  floats, their shortest decimal representation, never a float's binary expansion);
- `Connected(provider, attempt)`: the stream is authenticated and subscribed; an
  attempt above 1 is a reconnection, so the minutes in between may be missing;
- `Disconnected(provider, reason)`: the stream dropped (or a connection attempt
  failed); it is being reconnected with backoff.

A refusal for good (a wrong key, a plan without the feed) ends the feed: `get` raises
`ProviderRefused`, whose message names the setting to check and never the key.

Threading: `start` starts the thread; `get` is called from the consumer's thread only;
`close` (from the consumer's thread) cancels the client's task on its own loop, waits
for the thread, and is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from core.bars import Bar
from core.errors import ProviderRefused

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 10.0  # seconds close() waits for the client's thread
# How long after a minute's end a stream's bar for it may still come (a consumer's
# MinuteBook waits that long before a missing bar is a gap).
DEFAULT_GRACE = dt.timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class LiveBar:
    symbol: str
    bar: Bar


@dataclass(frozen=True, slots=True)
class Connected:
    provider: str
    attempt: int  # 1: the first connection; more: a reconnection after a drop

    @property
    def reconnected(self) -> bool:
        return self.attempt > 1


@dataclass(frozen=True, slots=True)
class Disconnected:
    provider: str
    reason: str


LiveEvent = LiveBar | Connected | Disconnected


@dataclass(frozen=True, slots=True)
class _Failed:
    error: ProviderRefused


class Backoff:
    """Exponential backoff with equal jitter: the n-th consecutive failure waits a
    random time in [d/2, d], d = min(cap, base * 2**(n-1)). A success resets it."""

    def __init__(self, base: float = 0.25, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        capped: float = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 30))
        return capped / 2 + random.random() * capped / 2

    def reset(self) -> None:
        self.failures = 0


class LiveBarFeed(ABC):
    """A provider's live minute bars for a set of symbols, as events in arrival order."""

    provider: str = "live"
    grace: dt.timedelta = DEFAULT_GRACE  # after a minute's end, how long its bars may come

    def __init__(self) -> None:
        self._events: queue.Queue[LiveEvent | _Failed] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._failed: ProviderRefused | None = None
        self._connections = 0
        self.symbols: tuple[str, ...] = ()

    # -- the consumer's side --------------------------------------------------------

    def start(self, symbols: Sequence[str]) -> None:
        """Connect and subscribe to the minute bars of `symbols` (once per feed)."""
        if self._thread is not None:
            raise RuntimeError("this feed was started already")
        if not symbols:
            raise ValueError("a live feed needs at least one symbol")
        self.symbols = tuple(dict.fromkeys(s.upper() for s in symbols))
        self._thread = threading.Thread(target=self._thread_main,
                                        name=f"live-{self.provider}", daemon=True)
        self._thread.start()

    def get(self, timeout: float | None = None) -> LiveEvent | None:
        """The next event, or None after `timeout` seconds without one. Raises
        ProviderRefused once the provider refused the feed for good."""
        if self._failed is not None:
            raise self._failed
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, _Failed):
            self._failed = item.error
            raise item.error
        return item

    def events(self, timeout: float | None = None) -> Iterator[LiveEvent]:
        """Events until the feed is closed, or until none came for `timeout` seconds."""
        while not self._closing.is_set():
            event = self.get(timeout)
            if event is None:
                return
            yield event

    def close(self) -> None:
        """Stop the stream and wait for its thread. Safe to call more than once."""
        self._closing.set()
        thread = self._thread
        if thread is None:
            return
        self._ready.wait(CLOSE_TIMEOUT)
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            # RuntimeError: the loop closed in between, the thread is ending anyway
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        thread.join(CLOSE_TIMEOUT)
        if thread.is_alive():
            log.warning("the %s live feed's thread did not stop within %.0fs",
                        self.provider, CLOSE_TIMEOUT)

    def __enter__(self) -> LiveBarFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the client's side (its thread, its loop) -----------------------------------

    @abstractmethod
    async def _stream(self, symbols: tuple[str, ...]) -> None:
        """Run the client's websocket loop until cancelled (or refused for good)."""

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # a bug, not a provider's answer: the consumer must know
            log.exception("the %s live feed stopped", self.provider)
            self._fail(ProviderRefused(f"the {self.provider} live feed stopped: {exc!r}"))
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ready.set()
        if self._closing.is_set():
            return
        try:
            await self._stream(self.symbols)
        except asyncio.CancelledError:
            if not self._closing.is_set():
                raise

    def _emit_bar(self, symbol: str, bar: Bar) -> None:
        self._events.put(LiveBar(symbol, bar))

    def _emit_connected(self) -> None:
        self._connections += 1
        self._events.put(Connected(self.provider, self._connections))

    def _emit_disconnected(self, reason: str) -> None:
        if not self._closing.is_set():
            self._events.put(Disconnected(self.provider, reason))

    def _fail(self, error: ProviderRefused) -> None:
        self._events.put(_Failed(error))


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in it replaced (a server may echo what it was sent)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
