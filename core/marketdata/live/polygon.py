"""Live minute bars from Massive's (formerly Polygon.io) stocks websocket through
massive's WebSocketClient.

The client (massive/websocket/__init__.py, `WebSocketClient.connect`) opens
ws[s]://{feed}/{market} (feed socket.massive.com for real time, delayed.massive.com for
15-minute delayed; a test passes its own host:port and `secure=False`), reads the
server's `[{"ev":"status","status":"connected",..}]`, sends `{"action":"auth","params":
key}`, raises `AuthError(message)` when the answer's first status is `auth_failed`,
then sends `{"action":"subscribe","params":"AM.AAPL,AM.MSFT"}` (its subscriptions
joined by commas) and hands every later frame to the processor. Minute aggregates are
`{"ev":"AM","sym","v","av","op","vw","o","c","h","l","a","z","s","e"}` with `s`/`e`
the window's start and end in Unix milliseconds.

How the client is steered here:
- `raw=True`: the processor gets the frame's text, which is parsed here with prices
  straight to Decimal (the client's own models hold floats);
- `max_reconnects=0`: on a dropped connection (ConnectionClosedError) the client
  raises instead of reconnecting silently, so the consumer is told (Disconnected);
  this feed then reconnects with backoff on a fresh client (which resubscribes), and
  the server's subscription ack reports it (Connected with attempt > 1). A clean close
  by the server (ConnectionClosedOK), on which the client returns, is reconnected
  the same way. Connection attempts that fail (refused, unreachable) are retried by
  the client itself, with websockets' backoff;
- `AuthError` ends the feed: ProviderRefused naming the setting, never the key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from decimal import Decimal
from typing import Any

from massive import WebSocketClient
from massive.exceptions import AuthError
from pydantic import SecretStr

from core.bars import Bar
from core.errors import ProviderRefused
from core.marketdata.live.base import Backoff, LiveBarFeed, redact

log = logging.getLogger(__name__)

KEY_SETTING = "TICKRUN_POLYGON_API_KEY"
REAL_TIME = "socket.massive.com"
DELAYED = "delayed.massive.com"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class PolygonLiveFeed(LiveBarFeed):
    """Minute aggregates (`AM.<SYMBOL>`) of Massive's stocks market."""

    provider = "polygon"

    def __init__(self, api_key: SecretStr, *, feed: str = REAL_TIME, secure: bool = True,
                 backoff: Backoff | None = None) -> None:
        super().__init__()
        self._api_key = api_key
        self.feed = feed
        self.secure = secure
        self._backoff = backoff or Backoff()
        self._subscribed = False  # this connection's subscription was acknowledged

    async def _stream(self, symbols: tuple[str, ...]) -> None:
        key = self._api_key.get_secret_value()
        while True:
            client = WebSocketClient(api_key=key, feed=self.feed, market="stocks", raw=True,
                                     subscriptions=[f"AM.{s}" for s in symbols],
                                     max_reconnects=0, secure=self.secure)
            self._subscribed = False
            try:
                await client.connect(self._process)
                reason = "the server closed the stream"
            except AuthError as exc:
                self._fail(ProviderRefused(
                    f"polygon refused the live stream ({redact(str(exc), [key])}): "
                    f"check {KEY_SETTING}"))
                return
            except Exception as exc:  # ConnectionClosedError and the like: reconnect
                reason = redact(f"{type(exc).__name__}: {exc}", [key])
            finally:
                if client.websocket is not None:
                    await client.close()
            self._emit_disconnected(reason)
            await asyncio.sleep(self._backoff.next_delay())

    async def _process(self, frame: str | bytes) -> None:
        try:
            messages = json.loads(frame, parse_float=Decimal)
        except ValueError:
            log.warning("polygon sent a frame that is not JSON: %.200r", frame)
            return
        for msg in messages if isinstance(messages, list) else [messages]:
            if not isinstance(msg, dict):
                continue
            event = msg.get("ev")
            if event == "AM":
                try:
                    bar = parse_aggregate(msg)
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    log.warning("polygon sent an aggregate tickrun cannot read (%s): %r",
                                exc, msg)
                    continue
                self._emit_bar(str(msg["sym"]), bar)
            elif event == "status":
                self._status(msg)

    def _status(self, msg: dict[str, Any]) -> None:
        status, message = msg.get("status"), str(msg.get("message", ""))
        if status == "success" and message.startswith("subscribed to"):
            if not self._subscribed:  # one ack per topic: the first one tells
                self._subscribed = True
                self._backoff.reset()
                self._emit_connected()
        elif status not in ("connected", "auth_success", "success"):
            # max_connections, slow_consumer, force_disconnect, error: the server
            # usually closes next, and the drop is reported then
            log.warning("polygon stream status %s: %s", status,
                        redact(message, [self._api_key.get_secret_value()]))


def parse_aggregate(msg: dict[str, Any]) -> Bar:
    """A minute aggregate (`ev: AM`) as a Bar stamped by its window's start."""
    start = msg["s"]
    if not isinstance(start, int) or isinstance(start, bool):
        raise TypeError(f"start is not Unix milliseconds: {start!r}")
    return Bar(time=_EPOCH + dt.timedelta(milliseconds=start), open=_decimal(msg["o"]),
               high=_decimal(msg["h"]), low=_decimal(msg["l"]), close=_decimal(msg["c"]),
               volume=_decimal(msg["v"]))


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise TypeError(f"not a number: {value!r}")
    return Decimal(value)
