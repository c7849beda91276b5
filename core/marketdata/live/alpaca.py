"""Live minute bars from Alpaca's market data stream through alpaca-py's StockDataStream.

The stream (wss://stream.data.alpaca.markets/v2/{iex|sip}; `url` overrides it) speaks
msgpack: alpaca-py sends `Content-Type: application/msgpack` on the upgrade and packs
and unpacks every frame with msgpack (alpaca/data/live/websocket.py, `_connect`,
`_auth`, `_consume`). Its session: the server's `[{"T":"success","msg":"connected"}]`,
then `{"action":"auth","key":..,"secret":..}` answered by
`[{"T":"success","msg":"authenticated"}]` or `[{"T":"error","code":402,"msg":"auth
failed"}]`, then `{"action":"subscribe","bars":[..]}` answered by a
`{"T":"subscription",..}` message, then bars `{"T":"b","S","o","h","l","c","v","t","n",
"vw"}` with `t` the minute's start as a msgpack timestamp and prices as msgpack floats.

With `raw_data=True` the handler gets that dict untouched: prices are the wire's
binary doubles, made Decimal through their shortest representation (`repr`), which is
the exact price printed for any price of up to 15 significant digits.

What the client does on its own, and how it is steered here (a subclass of
StockDataStream overriding three of its coroutines, against alpaca-py 0.44; its
`_run_forever` is awaited on the feed's own loop, not `run()`, so that closing is a
cancellation, at once, not its stop queue polled every 5 s):
- every failure of connect or auth is retried for ever with backoff (1 s doubling to
  30 s): `_start_ws` is wrapped so that a refusal for good (auth failed, insufficient
  subscription) stops the stream and reaches the consumer as ProviderRefused;
- a dropped connection is reconnected with the same backoff and resubscribed: the
  wrapped `_consume` reports the drop (Disconnected), the next subscription ack
  reports the reconnection (Connected with attempt > 1); a clean close by the server
  is a drop too;
- server errors after auth (`T: error`) are only logged by the client: the wrapped
  `_dispatch` logs them here too, by code, never with the key.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from decimal import Decimal
from typing import Any, Literal

from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed

with warnings.catch_warnings():
    # alpaca.data.live imports websockets' legacy client, which warns on import: code
    # that is not ours (and an error under pytest's -W error).
    warnings.filterwarnings("ignore", message="websockets.legacy is deprecated",
                            category=DeprecationWarning)
    from alpaca.data.enums import DataFeed
    from alpaca.data.live import StockDataStream

from core.bars import Bar
from core.errors import ProviderRefused
from core.marketdata.live.base import LiveBarFeed, redact

log = logging.getLogger(__name__)

KEY_SETTINGS = "TICKRUN_ALPACA_API_KEY_ID and TICKRUN_ALPACA_API_SECRET_KEY"
FEED_SETTING = "TICKRUN_ALPACA_FEED"
# What `_auth` raises (the server's `msg`, or the client's own words) when the answer
# will not change by retrying; anything else (connection limit exceeded, a timeout, a
# network error) is retried by the client.
_REFUSALS = {
    "auth failed": f"check {KEY_SETTINGS}",
    "failed to authenticate": f"check {KEY_SETTINGS}",
    "insufficient subscription": f"the plan does not include this feed: check {FEED_SETTING}",
}
_FEEDS = {"iex": DataFeed.IEX, "sip": DataFeed.SIP}


class AlpacaLiveFeed(LiveBarFeed):
    """Minute bars (`subscribe_bars`) of Alpaca's iex or sip feed."""

    provider = "alpaca"

    def __init__(self, key_id: SecretStr, secret_key: SecretStr, *,
                 feed: Literal["iex", "sip"] = "iex", url: str | None = None) -> None:
        super().__init__()
        self._key_id = key_id
        self._secret_key = secret_key
        self.feed = feed
        self.url = url

    async def _stream(self, symbols: tuple[str, ...]) -> None:
        stream = _Stream(self, self._key_id.get_secret_value(),
                         self._secret_key.get_secret_value(), raw_data=True,
                         feed=_FEEDS[self.feed], url_override=self.url)
        stream.subscribe_bars(self._on_bar, *symbols)
        try:
            await stream._run_forever()
        finally:
            await stream.close()

    async def _on_bar(self, msg: Any) -> None:  # raw_data: the message as a dict
        try:
            bar = parse_bar(msg)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            log.warning("alpaca sent a bar tickrun cannot read (%s): %r", exc, msg)
            return
        self._emit_bar(str(msg["S"]), bar)

    def _secrets(self) -> tuple[str, str]:
        return self._key_id.get_secret_value(), self._secret_key.get_secret_value()


class _Stream(StockDataStream):
    """alpaca-py's stream, telling its feed about connections, drops and refusals."""

    def __init__(self, owner: AlpacaLiveFeed, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    async def _start_ws(self) -> None:
        try:
            await super()._start_ws()
        except Exception as exc:
            reason = redact(str(exc), self._owner._secrets())
            advice = _REFUSALS.get(reason.strip().lower())
            if advice is not None:
                self._owner._fail(ProviderRefused(
                    f"alpaca refused the live stream ({reason}): {advice}"))
                await self.stop_ws()  # the client's retry loop ends instead of retrying
            else:
                self._owner._emit_disconnected(f"connecting failed: {reason}")
            raise

    async def _consume(self) -> bool:
        try:
            return await super()._consume()
        except ConnectionClosed as exc:  # other errors: the client goes on, same socket
            if self._should_run:
                self._owner._emit_disconnected(
                    redact(f"{type(exc).__name__}: {exc}", self._owner._secrets()))
            raise

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("T")
        if kind == "subscription":
            self._owner._emit_connected()
        elif kind == "error":
            log.warning("alpaca stream error %s: %s", msg.get("code"),
                        redact(str(msg.get("msg")), self._owner._secrets()))
        await super()._dispatch(msg)


def parse_bar(msg: dict[str, Any]) -> Bar:
    """A bar message (`T: b`) as a Bar: `t` is a msgpack Timestamp on the wire (a
    datetime or RFC 3339 text are read too), prices floats or text."""
    return Bar(time=_time(msg["t"]), open=_decimal(msg["o"]), high=_decimal(msg["h"]),
               low=_decimal(msg["l"]), close=_decimal(msg["c"]), volume=_decimal(msg["v"]))


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value) if isinstance(value, int | Decimal) else Decimal(str(value))


def _time(value: Any) -> dt.datetime:
    if hasattr(value, "to_datetime"):  # msgpack.Timestamp: UTC
        when: dt.datetime = value.to_datetime()
    elif isinstance(value, dt.datetime):
        when = value
    else:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"a bar time without a timezone: {value!r}")
    return when.astimezone(dt.UTC)
