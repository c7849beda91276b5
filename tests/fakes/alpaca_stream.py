"""A local Alpaca real-time market data stream (wss://stream.data.alpaca.markets/v2/
{feed}), speaking the protocol the official `alpaca-py` StockDataStream expects.

What alpaca-py 0.44 does (alpaca/data/live/websocket.py): it connects with the header
`Content-Type: application/msgpack` and from then on packs every frame it sends, and
unpacks every frame it receives, with msgpack (`_connect`, `_auth`, `_consume`); its
subscribe message may come as a fragmented message (`_send_subscribe_msg` splits it in
32 KiB frames). Alpaca's server then answers in msgpack too (JSON text otherwise: the
fake does both, by that header), always a list of messages:

- on connect `[{"T":"success","msg":"connected"}]`;
- `{"action":"auth","key":..,"secret":..}` -> `[{"T":"success","msg":"authenticated"}]`,
  or `[{"T":"error","code":402,"msg":"auth failed"}]` and the connection is closed; a
  feed the keys' plan lacks (`feeds`) -> `[{"T":"error","code":409,"msg":"insufficient
  subscription"}]`; anything before auth -> 401 "not authenticated";
- `{"action":"subscribe","bars":["AAPL"],..}` -> `[{"T":"subscription","trades":[],
  "quotes":[],"bars":["AAPL"],..}]` (every channel, what is subscribed now);
- a minute bar `[{"T":"b","S":"AAPL","o":..,"h":..,"l":..,"c":..,"v":..,"t":..,"n":..,
  "vw":..}]`: prices are floats (msgpack float64, or JSON numbers), `t` the minute's
  start, a msgpack timestamp (RFC 3339 text in JSON).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgpack

from core.bars import Bar
from tests.fakes.stream_server import FakeStreamServer, Session

CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds",
            "corrections", "cancelErrors")
MSGPACK = "application/msgpack"


class FakeAlpacaStream(FakeStreamServer):
    name = "alpaca-stream"

    def __init__(self, key_id: str = "fake-key-id", secret_key: str = "fake-secret",
                 feeds: tuple[str, ...] = ("iex",), host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.key_id = key_id
        self.secret_key = secret_key
        self.feeds = feeds

    def url(self, feed: str = "iex") -> str:
        return f"ws://{self.host}:{self.port}/v2/{feed}"

    def send_minute(self, symbol: str, bar: Bar, *, trades: int = 10,
                    vwap: Decimal | None = None) -> int:
        """Push `bar` (its time: the minute's start) to every session subscribed to the
        symbol's bars; the number of sessions reached."""
        msg = {"T": "b", "S": symbol, "o": bar.open, "h": bar.high, "l": bar.low,
               "c": bar.close, "v": bar.volume, "t": bar.time, "n": trades,
               "vw": vwap if vwap is not None else bar.close}
        return self._call(self._each_subscribed(symbol, msg))

    def send_raw(self, messages: list[dict[str, Any]]) -> int:
        """Messages as they are (a test's malformed or unexpected ones), to every session."""
        async def send(session: Session) -> bool:
            await self._send(session, messages)
            return True

        return self._call(self._each(send))

    async def _each_subscribed(self, symbol: str, msg: dict[str, Any]) -> int:
        async def send(session: Session) -> bool:
            if not (session.authenticated and symbol in session.subscriptions):
                return False
            await self._send(session, [msg])
            return True

        return await self._each(send)

    async def _session(self, session: Session) -> None:
        ws = session.ws
        await self._send(session, [{"T": "success", "msg": "connected"}])
        async for frame in ws:
            msg = self._decode(session, frame)
            action = msg.get("action") if isinstance(msg, dict) else None
            if action == "auth":
                if msg.get("key") != self.key_id or msg.get("secret") != self.secret_key:
                    self.auth_failures += 1
                    self._notify()
                    await self._send(session, [{"T": "error", "code": 402,
                                                "msg": "auth failed"}])
                    await ws.close()
                    return
                if session.path.rsplit("/", 1)[-1] not in self.feeds:
                    await self._send(session, [{"T": "error", "code": 409,
                                                "msg": "insufficient subscription"}])
                    await ws.close()
                    return
                session.authenticated = True
                await self._send(session, [{"T": "success", "msg": "authenticated"}])
            elif not session.authenticated:
                await self._send(session, [{"T": "error", "code": 401,
                                            "msg": "not authenticated"}])
            elif action in ("subscribe", "unsubscribe"):
                session.received.append(msg)
                symbols = set(msg.get("bars", []))
                if action == "subscribe":
                    session.subscriptions |= symbols
                else:
                    session.subscriptions -= symbols
                await self._send(session, [self._subscription(session)])
                self._notify()
            else:
                await self._send(session, [{"T": "error", "code": 400,
                                            "msg": "invalid syntax"}])

    @staticmethod
    def _subscription(session: Session) -> dict[str, Any]:
        msg: dict[str, Any] = {"T": "subscription"}
        msg.update({channel: [] for channel in CHANNELS})
        msg["bars"] = sorted(session.subscriptions)
        return msg

    @staticmethod
    def _msgpack(session: Session) -> bool:
        assert session.ws.request is not None
        return session.ws.request.headers.get("Content-Type") == MSGPACK

    def _decode(self, session: Session, frame: str | bytes) -> Any:
        if isinstance(frame, bytes) and self._msgpack(session):
            return msgpack.unpackb(frame)
        return json.loads(frame)

    async def _send(self, session: Session, messages: list[dict[str, Any]]) -> None:
        if self._msgpack(session):
            await session.ws.send(msgpack.packb(messages, default=_msgpack_default,
                                                datetime=True))
        else:
            await session.ws.send(json.dumps(messages, default=_json_default))


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, Decimal):  # what Alpaca's server sends: float64
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot pack {value!r}")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot encode {value!r}")
