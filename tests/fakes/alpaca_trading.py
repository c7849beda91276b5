"""A local Alpaca paper trading server: the REST API (orders, positions, account) and
its `trade_updates` websocket stream, for alpaca-py's TradingClient and TradingStream.

What alpaca-py 0.44 sends and reads (alpaca/common/rest.py, alpaca/trading/client.py,
stream.py, models.py), which this fake speaks:
- REST: {url}/v2/... with the APCA-API-KEY-ID / APCA-API-SECRET-KEY headers. POST
  /v2/orders with a JSON body (`symbol`, `qty` as a JSON number, `side`, `type`,
  `time_in_force`, `client_order_id`, `limit_price` / `stop_price`); GET /v2/orders
  (`status`, `limit`, `nested`, ...); GET /v2/orders:by_client_order_id?client_order_id=;
  GET and DELETE /v2/orders/{uuid} (the client checks the id is a UUID); GET
  /v2/positions; DELETE /v2/positions/{symbol}; GET /v2/account. A non-2xx body is
  Alpaca's JSON error `{"code": ..., "message": ...}` (APIError reads both); an empty
  2xx body (204) is None to the client.
- Stream: JSON, not msgpack (stream.py json.dumps / json.loads both ways). The client
  sends `{"action": "authenticate", "data": {"key_id", "secret_key"}}` and reads one
  message whose data.status must be "authorized", then sends `{"action": "listen",
  "data": {"streams": ["trade_updates"]}}`; it dispatches only messages whose stream is
  "trade_updates" (the "listening" acknowledgement is read and ignored). Like Alpaca's
  paper endpoint, this fake sends binary frames (the client's json.loads reads both).
  A trade update's data: event, execution_id, order (an Order), timestamp, and for
  fills price, qty (this fill), position_qty.

The test drives the market: `fill(client_order_id, qty, price)` (a partial fill when
qty is less than what remains), `reject`, `expire`; a buy whose cost is over the cash is
refused on POST with 403 "insufficient buying power".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

_WEBSOCKET_LOG = logging.getLogger(f"{__name__}.websocket")
_WEBSOCKET_LOG.setLevel(logging.INFO)
Answer = tuple[int, Any]  # status, JSON body (None: no body)
FINAL = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
_BODY_METHODS = ("POST", "PATCH")


@dataclass(frozen=True)
class Seen:
    """A request as the fake saw it (no headers: no keys)."""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    status: int


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _error(status: int, code: int, message: str) -> Answer:
    return status, {"code": code, "message": message}


class FakeAlpacaTrading:
    """Alpaca's paper trading API for one account, in memory."""

    def __init__(self, key_id: str, secret_key: str, *, cash: Decimal = Decimal(100_000),
                 prices: Mapping[str, Decimal] | None = None, host: str = "127.0.0.1") -> None:
        self.key_id = key_id
        self.secret_key = secret_key
        self.cash = cash
        self.prices = dict(prices or {"AAPL": Decimal(100), "MSFT": Decimal(400)})
        self.host = host
        self.orders: dict[str, dict[str, Any]] = {}  # by id, in submission order
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (qty, avg)
        self.seen: list[Seen] = []
        self.listeners: list[ServerConnection] = []
        self.stream_messages: list[dict[str, Any]] = []  # what the clients sent
        self._failures: list[int] = []
        self._pending: list[dict[str, Any]] = []  # trade updates to send after the lock
        self._lock = threading.RLock()
        self._listening = threading.Condition(self._lock)
        self._http = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever,
                                             kwargs={"poll_interval": 0.05}, daemon=True,
                                             name="fake-alpaca-trading")
        self._loop = asyncio.new_event_loop()
        self._ws_thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                           name="fake-alpaca-stream")
        self._ws: Server | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._http.server_address[1]}"

    @property
    def stream_url(self) -> str:
        assert self._ws is not None
        port = self._ws.sockets[0].getsockname()[1]
        return f"ws://{self.host}:{port}/stream"

    def start(self) -> Self:
        self._http_thread.start()
        self._ws_thread.start()
        self._ws = asyncio.run_coroutine_threadsafe(self._serve_ws(), self._loop).result(5)
        return self

    async def _serve_ws(self) -> Server:
        # its own logger, held at INFO: websockets logs every frame at DEBUG, and the
        # client's first one carries the keys
        return await serve(self._stream_session, self.host, 0, ping_interval=None,
                           logger=_WEBSOCKET_LOG)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._http_thread.join(5)
        if self._ws is not None:
            server = self._ws

            async def stop() -> None:
                server.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._ws_thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- knobs -------------------------------------------------------------------------
    def fail_next(self, count: int, status: int = 503) -> None:
        """The next `count` REST requests answer `status`."""
        with self._lock:
            self._failures.extend([status] * count)

    def by_client_id(self, client_order_id: str) -> dict[str, Any]:
        with self._lock:
            for order in self.orders.values():
                if order["client_order_id"] == client_order_id:
                    return dict(order)
        raise KeyError(client_order_id)

    def order_count(self, client_order_id: str | None = None) -> int:
        with self._lock:
            return sum(1 for o in self.orders.values()
                       if client_order_id in (None, o["client_order_id"]))

    def fill(self, client_order_id: str, qty: Decimal | int | str | None = None,
             price: Decimal | int | str | None = None) -> None:
        """Fill `qty` of the order (all that remains by default) at `price` (the order's
        limit, else the symbol's price): a partial_fill while some remains, then fill."""
        with self._lock:
            order = self.orders[self.by_client_id(client_order_id)["id"]]
            if order["status"] in FINAL:
                raise ValueError(f"order {client_order_id} is {order['status']}")
            total, done = Decimal(order["qty"]), Decimal(order["filled_qty"])
            amount = total - done if qty is None else Decimal(qty)
            if not 0 < amount <= total - done:
                raise ValueError(f"cannot fill {amount} of {total - done} remaining")
            at = Decimal(price) if price is not None else (
                Decimal(order["limit_price"]) if order["limit_price"] is not None
                else self.prices[order["symbol"]])
            average = Decimal(order["filled_avg_price"] or 0)
            filled = done + amount
            order["filled_avg_price"] = str((average * done + at * amount) / filled)
            order["filled_qty"] = str(filled)
            now = _now()
            order["updated_at"] = now
            finished = filled == total
            order["status"] = "filled" if finished else "partially_filled"
            if finished:
                order["filled_at"] = now
            signed = amount if order["side"] == "buy" else -amount
            position = self._move(order["symbol"], signed, at)
            self.cash -= signed * at
            update = {"event": "fill" if finished else "partial_fill",
                      "execution_id": str(uuid.uuid4()), "order": dict(order),
                      "timestamp": now, "price": str(at), "qty": str(amount),
                      "position_qty": str(position)}
        self._publish(update)

    def reject(self, client_order_id: str) -> None:
        self._finish(client_order_id, "rejected", "failed_at")

    def expire(self, client_order_id: str) -> None:
        self._finish(client_order_id, "expired", "expired_at")

    def wait_for_listeners(self, count: int = 1, timeout: float = 10) -> None:
        """Until `count` stream clients listen to trade_updates."""
        with self._listening:
            if not self._listening.wait_for(lambda: len(self.listeners) >= count, timeout):
                raise TimeoutError(f"{len(self.listeners)} of {count} stream listeners")

    # -- the account -------------------------------------------------------------------
    def _move(self, symbol: str, signed: Decimal, price: Decimal) -> Decimal:
        held, average = self.positions.get(symbol, (Decimal(0), Decimal(0)))
        after = held + signed
        if after == 0:
            self.positions.pop(symbol, None)
        elif held == 0 or (held > 0) != (after > 0):
            self.positions[symbol] = (after, price)  # opened, or flipped over
        elif abs(after) > abs(held):
            self.positions[symbol] = (after, (average * held + price * signed) / after)
        else:
            self.positions[symbol] = (after, average)
        return after

    def _finish(self, client_order_id: str, status: str, stamp: str) -> None:
        with self._lock:
            order = self.orders[self.by_client_id(client_order_id)["id"]]
            now = _now()
            order.update({"status": status, stamp: now, "updated_at": now})
            update = {"event": status, "order": dict(order), "timestamp": now}
        self._publish(update)

    def _new_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        now = _now()
        order_type = body.get("type", "market")
        return {
            "id": str(uuid.uuid4()),
            "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
            "created_at": now, "updated_at": now, "submitted_at": now,
            "filled_at": None, "expired_at": None, "expires_at": None, "canceled_at": None,
            "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])),
            "symbol": body["symbol"], "asset_class": "us_equity", "notional": None,
            "qty": str(Decimal(str(body["qty"]))), "filled_qty": "0",
            "filled_avg_price": None, "order_class": "simple",
            "order_type": order_type, "type": order_type, "side": body["side"],
            "position_intent": None, "time_in_force": body["time_in_force"],
            "limit_price": _price(body.get("limit_price")),
            "stop_price": _price(body.get("stop_price")),
            "status": "new", "extended_hours": bool(body.get("extended_hours", False)),
            "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
            "subtag": None, "source": None,
        }

    def _position_json(self, symbol: str) -> dict[str, Any]:
        qty, average = self.positions[symbol]
        price = self.prices.get(symbol, average)
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol,
            "exchange": "NASDAQ", "asset_class": "us_equity", "asset_marginable": True,
            "avg_entry_price": str(average), "qty": str(qty),
            "side": "long" if qty > 0 else "short",
            "market_value": str(qty * price), "cost_basis": str(qty * average),
            "unrealized_pl": str(qty * (price - average)), "unrealized_plpc": "0",
            "unrealized_intraday_pl": "0", "unrealized_intraday_plpc": "0",
            "current_price": str(price), "lastday_price": str(price), "change_today": "0",
            "qty_available": str(qty),
        }

    def _account_json(self) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "fake-account")),
            "account_number": "PA0000000001", "status": "ACTIVE", "currency": "USD",
            "buying_power": str(self.cash), "cash": str(self.cash),
            "portfolio_value": str(self.cash), "equity": str(self.cash),
            "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
            "shorting_enabled": True, "multiplier": "1",
        }

    # -- REST --------------------------------------------------------------------------
    def serve(self, method: str, path: str, params: dict[str, str],
              headers: Mapping[str, str], body: Any) -> Answer:
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                answer = _error(status, status * 100_000, "internal server error occurred"
                                if status >= 500 else "rate limit exceeded")
            elif (headers.get("apca-api-key-id") != self.key_id
                  or headers.get("apca-api-secret-key") != self.secret_key):
                answer = _error(401, 40110000, "request is not authorized")
            else:
                answer = self._route(method, path, params, body)
            self.seen.append(Seen(method, path, dict(params), body, answer[0]))
            pending, self._pending = self._pending, []
        for update in pending:
            self._publish(update)
        return answer

    def _route(self, method: str, path: str, params: dict[str, str], body: Any) -> Answer:
        if path == "/v2/orders" and method == "POST":
            return self._submit(body)
        if path == "/v2/orders" and method == "GET":
            return 200, self._list(params)
        if path == "/v2/orders:by_client_order_id" and method == "GET":
            try:
                return 200, self.by_client_id(params.get("client_order_id", ""))
            except KeyError:
                return _error(404, 40410000, "order not found")
        if path.startswith("/v2/orders/"):
            order = self.orders.get(path.removeprefix("/v2/orders/"))
            if order is None:
                return _error(404, 40410000, "order not found")
            if method == "GET":
                return 200, dict(order)
            if method == "DELETE":
                if order["status"] in FINAL:
                    return _error(422, 42210000,
                                  f'order is already in "{order["status"]}" state')
                now = _now()
                order.update({"status": "canceled", "canceled_at": now, "updated_at": now})
                self._pending.append({"event": "canceled", "order": dict(order),
                                      "timestamp": now})
                return 204, None
        if path == "/v2/positions" and method == "GET":
            return 200, [self._position_json(s) for s in sorted(self.positions)]
        if path.startswith("/v2/positions/") and method == "DELETE":
            symbol = path.removeprefix("/v2/positions/")
            if symbol not in self.positions:
                return _error(404, 40410000, "position does not exist")
            qty = self.positions[symbol][0]
            return self._submit({"symbol": symbol, "qty": str(abs(qty)), "type": "market",
                                 "side": "sell" if qty > 0 else "buy",
                                 "time_in_force": "day"})
        if path == "/v2/account" and method == "GET":
            return 200, self._account_json()
        return _error(404, 40410000, "endpoint not found")

    def _submit(self, body: Any) -> Answer:
        if not isinstance(body, dict) or not body.get("symbol") or body.get("qty") is None:
            return _error(422, 40010000, "invalid order request")
        cid = body.get("client_order_id")
        if cid is not None and len(str(cid)) > 48:
            return _error(422, 40010000, "client_order_id must be no more than 48 characters")
        if cid is not None and any(o["client_order_id"] == cid for o in self.orders.values()):
            return _error(422, 40010001, "client_order_id must be unique")
        if body.get("side") not in ("buy", "sell"):
            return _error(422, 40010000, "invalid side")
        if body.get("type") not in ("market", "limit", "stop", "stop_limit"):
            return _error(422, 40010000, "invalid order type")
        if body.get("time_in_force") not in ("day", "gtc", "opg", "cls", "ioc", "fok"):
            return _error(422, 40010000, "invalid time_in_force")
        qty = Decimal(str(body["qty"]))
        if qty <= 0:
            return _error(422, 40010000, "qty must be > 0")
        if body["symbol"] not in self.prices:
            return _error(422, 40010000, f"asset \"{body['symbol']}\" not found")
        if body["side"] == "buy":
            price = Decimal(str(body.get("limit_price") or self.prices[body["symbol"]]))
            open_buys = sum((Decimal(o["qty"]) - Decimal(o["filled_qty"]))
                            * Decimal(o["limit_price"] or self.prices[o["symbol"]])
                            for o in self.orders.values()
                            if o["side"] == "buy" and o["status"] not in FINAL)
            if qty * price + open_buys > self.cash:
                return _error(403, 40310000, "insufficient buying power")
        order = self._new_order(body)
        self.orders[order["id"]] = order
        self._pending.append({"event": "new", "order": dict(order), "timestamp": _now()})
        return 200, dict(order)

    def _list(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        status = params.get("status", "open")
        limit = min(int(params.get("limit", 50)), 500)
        symbols = {s for s in params.get("symbols", "").split(",") if s}
        chosen = [dict(o) for o in self.orders.values()
                  if (status == "all" or (status == "open") == (o["status"] not in FINAL))
                  and (not symbols or o["symbol"] in symbols)]
        if params.get("direction", "desc") == "desc":
            chosen.reverse()
        return chosen[:limit]

    # -- the stream --------------------------------------------------------------------
    async def _stream_session(self, connection: ServerConnection) -> None:
        try:
            first = json.loads(await connection.recv())
            self.stream_messages.append(first)
            data = first.get("data") or {}
            if (first.get("action") != "authenticate" or data.get("key_id") != self.key_id
                    or data.get("secret_key") != self.secret_key):
                await connection.send(_frame({"stream": "authorization", "data": {
                    "action": "authenticate", "status": "unauthorized"}}))
                await connection.close(1008, "unauthorized")
                return
            await connection.send(_frame({"stream": "authorization", "data": {
                "action": "authenticate", "status": "authorized"}}))
            async for raw in connection:
                message = json.loads(raw)
                self.stream_messages.append(message)
                if message.get("action") != "listen":
                    continue
                streams = [s for s in (message.get("data") or {}).get("streams", [])
                           if s == "trade_updates"]
                await connection.send(_frame({"stream": "listening",
                                              "data": {"streams": streams}}))
                with self._listening:
                    if streams and connection not in self.listeners:
                        self.listeners.append(connection)
                    elif not streams and connection in self.listeners:
                        self.listeners.remove(connection)
                    self._listening.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._listening:
                if connection in self.listeners:
                    self.listeners.remove(connection)

    def _publish(self, data: Mapping[str, Any]) -> None:
        frame = _frame({"stream": "trade_updates", "data": dict(data)})

        async def send() -> None:
            with self._lock:
                listeners = list(self.listeners)
            for connection in listeners:
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(frame)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(5)


def _frame(message: Mapping[str, Any]) -> bytes:
    # Alpaca's paper stream sends JSON in binary frames.
    return json.dumps(message, separators=(",", ":")).encode()


def _price(value: Any) -> str | None:
    return None if value is None else str(Decimal(str(value)))


def _handler_for(fake: FakeAlpacaTrading) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            body: Any = None
            length = int(self.headers.get("content-length") or 0)
            if length:
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(*_error(400, 40010000, "request body format is invalid"))
                    return
            status, payload = fake.serve(
                self.command, unquote(parts.path),
                dict(parse_qsl(parts.query, keep_blank_values=True)),
                {k.lower(): v for k, v in self.headers.items()}, body)
            self._send(status, payload)

        do_GET = do_POST = do_DELETE = do_PATCH = _handle

        def _send(self, status: int, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                if data:
                    self.send_header("content-type", "application/json; charset=UTF-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

