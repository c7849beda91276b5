"""A local Massive (formerly Polygon.io) stocks websocket (wss://socket.massive.com/stocks),
speaking the protocol the official `massive` WebSocketClient expects.

What massive 2.9.1 does (massive/websocket/__init__.py, `WebSocketClient.connect`): it
opens ws[s]://{feed}/{market}, reads one frame (the connected status), sends
`{"action":"auth","params":key}`, reads one frame and raises AuthError(its first
message's "message") when that message's status is "auth_failed", then sends
`{"action":"subscribe","params":"AM.AAPL,AM.MSFT"}` (topics joined by commas) and
reads frames, each a JSON list of messages. The fake answers as Massive's server does:

- on connect `[{"ev":"status","status":"connected","message":"Connected Successfully"}]`;
- auth with the right key -> `[{"ev":"status","status":"auth_success","message":
  "authenticated"}]`, else `[{"ev":"status","status":"auth_failed","message":
  "authentication failed"}]` and the connection is closed; anything else before auth
  -> `[{"ev":"status","status":"error","message":"not authorized"}]`;
- subscribe -> `[{"ev":"status","status":"success","message":"subscribed to: AM.AAPL"}]`,
  one status per topic;
- a minute aggregate `[{"ev":"AM","sym":"AAPL","v":..,"av":..,"op":..,"vw":..,"o":..,
  "c":..,"h":..,"l":..,"a":..,"z":..,"s":<start ms>,"e":<end ms>}]`, prices as JSON
  numbers with the bar's digits.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from core.bars import Bar
from tests.fakes.polygon_server import json_number
from tests.fakes.stream_server import FakeStreamServer, Session

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def millis(when: dt.datetime) -> int:
    return (when - _EPOCH) // dt.timedelta(milliseconds=1)


class FakePolygonStream(FakeStreamServer):
    name = "polygon-stream"

    def __init__(self, api_key: str = "fake-polygon-key") -> None:
        super().__init__()
        self.api_key = api_key
        self._accumulated: dict[str, Decimal] = {}

    @property
    def feed(self) -> str:
        """What the client takes as its `feed` (host:port), with `secure=False`."""
        return f"{self.host}:{self.port}"

    def send_minute(self, symbol: str, bar: Bar, *, vwap: Decimal | None = None) -> int:
        """Push `bar` (its time: the minute's start) as an AM aggregate to every session
        subscribed to AM.<symbol>; the number of sessions reached."""
        accumulated = self._accumulated.get(symbol, Decimal(0)) + bar.volume
        self._accumulated[symbol] = accumulated
        msg = {"ev": "AM", "sym": symbol, "v": json_number(bar.volume),
               "av": json_number(accumulated), "op": json_number(bar.open),
               "vw": json_number(vwap if vwap is not None else bar.close),
               "o": json_number(bar.open), "c": json_number(bar.close),
               "h": json_number(bar.high), "l": json_number(bar.low),
               "a": json_number(bar.close), "z": 100, "s": millis(bar.time),
               "e": millis(bar.time + dt.timedelta(minutes=1))}
        topic = f"AM.{symbol}"

        async def send(session: Session) -> bool:
            if not (session.authenticated and topic in session.subscriptions):
                return False
            await session.ws.send(json.dumps([msg]))
            return True

        return self._call(self._each(send))

    def send_raw(self, messages: list[dict[str, Any]]) -> int:
        async def send(session: Session) -> bool:
            await session.ws.send(json.dumps(messages))
            return True

        return self._call(self._each(send))

    async def _session(self, session: Session) -> None:
        ws = session.ws
        await ws.send(_status("connected", "Connected Successfully"))
        async for frame in ws:
            msg = json.loads(frame)
            action = msg.get("action") if isinstance(msg, dict) else None
            if action == "auth":
                if msg.get("params") != self.api_key:
                    self.auth_failures += 1
                    self._notify()
                    await ws.send(_status("auth_failed", "authentication failed"))
                    await ws.close()
                    return
                session.authenticated = True
                await ws.send(_status("auth_success", "authenticated"))
            elif not session.authenticated:
                await ws.send(_status("error", "not authorized"))
            elif action in ("subscribe", "unsubscribe"):
                session.received.append(msg)
                topics = [t.strip() for t in str(msg.get("params", "")).split(",")
                          if t.strip()]
                if action == "subscribe":
                    session.subscriptions |= set(topics)
                else:
                    session.subscriptions -= set(topics)
                word = "subscribed to" if action == "subscribe" else "unsubscribed to"
                await ws.send(json.dumps([
                    {"ev": "status", "status": "success", "message": f"{word}: {t}"}
                    for t in topics]))
                self._notify()
            else:
                await ws.send(_status("error", "invalid action"))


def _status(status: str, message: str) -> str:
    return json.dumps([{"ev": "status", "status": status, "message": message}])
