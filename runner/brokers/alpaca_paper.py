"""A run's orders at Alpaca's paper trading API, through its official client alpaca-py.

`AlpacaPaperBook` sends orders with `TradingClient` (REST, raw JSON answers) and takes
their fills from the account's `trade_updates` stream (`TradingStream`, raw messages)
into a thread-safe queue of `BrokerEvent`s. It keeps no ledger: the session loop maps
what it answers into the run's ledger (not wired yet).

- **One order per (run, step, seq).** Every order carries the client order id
  `tr-{run}-{step}-{seq}` (`client_order_id`; at most 48 characters, Alpaca's limit).
  Alpaca answers a second order with an id it has seen with 422 `{"code": 40010001,
  "message": "client_order_id must be unique"}`: `submit` then fetches the existing
  order by its client id and answers that one (`existing=True`). A runner that replaced
  a lost pod, or a POST retried after an answer that never arrived, sends the order
  again and gets the first one, never a second.
- **Refusals are answers.** A 4xx about an order (403 "insufficient buying power", 422
  "qty must be > 0", ...) is a `core.records.Refusal` carrying Alpaca's message, for the
  agent to read; 401 (the keys) is a `BrokerRefused` for the operator; 429, 5xx and
  connection failures are retried within a deadline and then a `BrokerUnavailable`
  (the order may or may not have been taken: `submit` it again, or `find` it).
- **Retries** are urllib3's, by tickrun's one policy
  (core.marketdata.providers.retry.DeadlineRetry) on an HTTPAdapter mounted on the
  client's requests session, as core.marketdata.providers.alpaca does: alpaca-py's own
  loop (3 s sleeps on 429/504, no deadline) is off. Unlike the data fetches, POST and
  DELETE are retried too: the client order id makes a repeated POST harmless, and a
  repeated cancel is refused, not doubled.
- **Fills** come from the stream: `fill` and `partial_fill` with the broker's price and
  this fill's quantity, and the order's cumulative filled quantity; `canceled`,
  `expired`, `rejected`, `new`, ... as they come. Events of orders that are not this
  book's (another client id prefix) are dropped; a fill already reported (the same
  cumulative quantity again) is dropped too. A fill the stream did not bring to this
  book (it happened while the pod was gone) is recovered from the order itself:
  `catch_up` answers the part of its filled quantity the ledger does not hold yet.
- **After a pod loss**, `reconcile(run_id)` lists this run's open orders at the broker
  (by client id prefix) and the account's positions, for the loop to compare with its
  ledger before it decides again.
- **Keys** are SecretStr, and every message this module makes or passes on has them
  replaced by "[redacted]". The stream's websocket logs its frames (the authenticate
  frame carries the keys) at DEBUG: it is given a logger of its own held at INFO.

Alpaca's positions are the account's: `flatten` and `reconcile` assume the paper account
plays one live run at a time (a user's paper keys, one run on them), unless `flatten`
is told the run's own holdings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Self, TypeVar

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

with warnings.catch_warnings():
    # alpaca.trading's stream module imports websockets' legacy client: a
    # DeprecationWarning about code that is not ours (an error under pytest's -W error).
    warnings.filterwarnings("ignore", message="websockets.legacy is deprecated",
                            category=DeprecationWarning)
    from alpaca.common.exceptions import APIError
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, QueryOrderStatus
    from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
    from alpaca.trading.requests import (
        GetOrdersRequest,
        LimitOrderRequest,
        MarketOrderRequest,
        OrderRequest,
        StopLimitOrderRequest,
        StopOrderRequest,
    )
    from alpaca.trading.stream import TradingStream

from core.errors import TemporaryError, TickrunError
from core.marketdata.providers.retry import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    DeadlineRetry,
    gave_up,
    retry_policy,
)
from core.records import Order, OrderType, Refusal, Side, TimeInForce

log = logging.getLogger(__name__)
# The stream's websocket logs every frame at DEBUG, the authenticate frame with the keys
# in it included: it logs to this logger, which never says DEBUG whatever the root does.
_WEBSOCKET_LOG = logging.getLogger(f"{__name__}.websocket")
_WEBSOCKET_LOG.setLevel(logging.INFO)
# alpaca-py's defaults, and the logger above
_WEBSOCKET_PARAMS = {"ping_interval": 10, "ping_timeout": 180, "max_queue": 1024,
                     "logger": _WEBSOCKET_LOG}

CLIENT_ID_PREFIX = "tr"
MAX_CLIENT_ORDER_ID = 48  # Alpaca refuses a longer client_order_id
DUPLICATE_CODE = 40010001  # 422 "client_order_id must be unique"
OPEN_ORDERS_LIMIT = 500  # GET /v2/orders answers at most 500 orders
DEFAULT_DEADLINE_SECONDS = 30.0
REDACTED = "[redacted]"

# An order in one of these will not change any more; any other status is open.
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "replaced", "rejected",
                            "done_for_day", "stopped", "suspended"})
FILL_EVENTS = frozenset({"fill", "partial_fill"})
_TIME_IN_FORCE = {TimeInForce.DAY: AlpacaTimeInForce.DAY,
                  TimeInForce.GTC: AlpacaTimeInForce.GTC}
_BUYS = (Side.BUY, Side.COVER)  # a short is a sell with no position, a cover a buy
_PART = re.compile(r"[A-Za-z0-9]+")

T = TypeVar("T")


class BrokerRefused(TickrunError):
    """The broker refused the book itself (its keys, 401): no order can go until an
    operator (or the keys' owner) acts. Never a single order's refusal."""


class BrokerUnavailable(TemporaryError):
    """The broker did not answer within the deadline (429, 5xx, unreachable, a malformed
    answer). An order being sent may or may not have been taken: send it again (same
    client order id) or `find` it."""


# -- client order ids ------------------------------------------------------------------


def client_order_id(run_id: int, step: int, seq: int, prefix: str = CLIENT_ID_PREFIX) -> str:
    """The order's id at the broker, the same for every attempt of the run:
    `{prefix}-{run}-{step}-{seq}`."""
    if not _PART.fullmatch(prefix):
        raise ValueError(f"a client order id prefix is letters and digits, got {prefix!r}")
    if min(run_id, step, seq) < 0:
        raise ValueError(f"run, step and seq are not negative: {run_id}, {step}, {seq}")
    text = f"{prefix}-{run_id}-{step}-{seq}"
    if len(text) > MAX_CLIENT_ORDER_ID:
        raise ValueError(f"client order id {text!r} is longer than {MAX_CLIENT_ORDER_ID}")
    return text


def run_prefix(run_id: int, prefix: str = CLIENT_ID_PREFIX) -> str:
    """What every client order id of the run starts with (the dash ends the run id:
    run 1's prefix is not run 12's)."""
    return f"{prefix}-{run_id}-"


def parse_client_order_id(text: str, prefix: str = CLIENT_ID_PREFIX
                          ) -> tuple[int, int, int] | None:
    """(run, step, seq) of one of our client order ids; None for any other."""
    match = re.fullmatch(re.escape(prefix) + r"-(\d+)-(\d+)-(\d+)", text)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3])


# -- what the broker answers -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker holds it."""

    id: str  # the broker's id
    client_order_id: str
    symbol: str
    side: str  # the broker's side: buy or sell
    type: str
    time_in_force: str
    quantity: Decimal
    filled_quantity: Decimal  # cumulative
    filled_avg_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: str
    submitted_at: dt.datetime | None
    filled_at: dt.datetime | None
    updated_at: dt.datetime | None
    existing: bool = False  # found by its client id: it had been sent before

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], *, existing: bool = False) -> BrokerOrder:
        return cls(
            id=str(raw["id"]), client_order_id=str(raw["client_order_id"]),
            symbol=str(raw["symbol"]), side=str(raw["side"]),
            type=str(raw.get("type") or raw.get("order_type")),
            time_in_force=str(raw["time_in_force"]),
            quantity=_decimal(raw.get("qty")) or Decimal(0),
            filled_quantity=_decimal(raw.get("filled_qty")) or Decimal(0),
            filled_avg_price=_decimal(raw.get("filled_avg_price")),
            limit_price=_decimal(raw.get("limit_price")),
            stop_price=_decimal(raw.get("stop_price")),
            status=str(raw["status"]),
            submitted_at=_time(raw.get("submitted_at")),
            filled_at=_time(raw.get("filled_at")),
            updated_at=_time(raw.get("updated_at")),
            existing=existing)


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    """One trade update of one of this book's orders."""

    event: str  # fill, partial_fill, canceled, expired, rejected, new, ...
    client_order_id: str
    run_id: int
    step: int
    seq: int
    order: BrokerOrder  # the order after the event
    price: Decimal | None  # a fill's price (the broker's)
    quantity: Decimal | None  # a fill's quantity (this fill only)
    filled_quantity: Decimal  # the order's cumulative filled quantity after it
    position_quantity: Decimal | None  # the account's position in the symbol after it
    timestamp: dt.datetime
    execution_id: str | None = None
    recovered: bool = False  # made from the order's state, not from a stream message

    @property
    def is_fill(self) -> bool:
        return self.event in FILL_EVENTS


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    symbol: str
    quantity: Decimal  # negative: short
    avg_entry_price: Decimal | None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What the broker holds for a run, to compare with its ledger after a pod loss."""

    open_orders: list[BrokerOrder]  # this run's orders that are still open, oldest first
    positions: dict[str, BrokerPosition]  # the account's, by symbol


# -- the book --------------------------------------------------------------------------


class _PolicyAdapter(HTTPAdapter):
    """An HTTPAdapter whose retry policy is set per call and that never waits
    unbounded (the connect/read timeouts go on every request)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__(max_retries=0)
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        return super().send(request, stream, self._timeout if timeout is None else timeout,
                            verify, cert, proxies)


def _policy(deadline_seconds: float) -> DeadlineRetry:
    # tickrun's policy, with POST and DELETE retried too: a repeated POST carries the
    # same client_order_id (a duplicate is answered 422, then found), a repeated cancel
    # is refused.
    return retry_policy(deadline_seconds).new(
        allowed_methods=frozenset({"GET", "POST", "DELETE"}))


class AlpacaPaperBook:
    """Orders of live runs at Alpaca's paper API, and their fills from its stream.

    `url` / `stream_url` override Alpaca's paper endpoints (tests). `start()` opens the
    trade-updates stream in a thread; `close()` stops it. REST calls are serialized
    (one lock): each runs under a fresh retry policy with `deadline_seconds`."""

    def __init__(self, key_id: SecretStr, secret_key: SecretStr, *, url: str | None = None,
                 stream_url: str | None = None,
                 deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
                 prefix: str = CLIENT_ID_PREFIX) -> None:
        client_order_id(0, 0, 0, prefix)  # the prefix is valid
        self._key_id = key_id
        self._secret_key = secret_key
        self._url = url
        self._stream_url = stream_url
        self._deadline = deadline_seconds
        self.prefix = prefix
        self._client = TradingClient(api_key=key_id.get_secret_value(),
                                     secret_key=secret_key.get_secret_value(),
                                     paper=True, raw_data=True, url_override=url)
        # alpaca-py's own loop retries 429/504 only while its counter is above zero.
        self._client._retry = 0
        self._client._retry_codes = []
        timeout = (min(CONNECT_TIMEOUT, deadline_seconds), min(READ_TIMEOUT, deadline_seconds))
        self._adapter = _PolicyAdapter(timeout)
        self._client._session.mount("https://", self._adapter)
        self._client._session.mount("http://", self._adapter)
        self._rest_lock = threading.Lock()
        self._events: queue.Queue[BrokerEvent] = queue.Queue()
        self._seen_lock = threading.Lock()
        self._seen: dict[str, tuple[Decimal, Decimal]] = {}  # id -> (filled qty, notional)
        self._done: set[tuple[str, str]] = set()  # (id, event) of final events reported
        self._stream: TradingStream | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AlpacaPaperBook(url={self._url!r}, prefix={self.prefix!r})"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Self:
        """Open the trade-updates stream (alpaca-py reconnects it on its own)."""
        if self._thread is not None:
            return self
        stream = TradingStream(self._key_id.get_secret_value(),
                               self._secret_key.get_secret_value(), paper=True,
                               raw_data=True,
                               url_override=self._stream_url,  # type: ignore[arg-type]
                               websocket_params=dict(_WEBSOCKET_PARAMS))
        stream.subscribe_trade_updates(self._on_update)
        self._stream = stream
        self._thread = threading.Thread(target=stream.run, daemon=True,
                                        name="alpaca-trade-updates")
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the stream (at once: its socket is closed, not left to time out)."""
        stream, thread = self._stream, self._thread
        self._stream = self._thread = None
        if stream is not None and thread is not None:
            loop = _stream_loop(stream, thread)
            if loop is not None:
                try:
                    asyncio.run_coroutine_threadsafe(stream.stop_ws(), loop).result(5)
                    asyncio.run_coroutine_threadsafe(stream.close(), loop).result(5)
                except (RuntimeError, TimeoutError, asyncio.CancelledError):
                    pass  # its loop ended meanwhile
            thread.join(10)
        self._client._session.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- orders ------------------------------------------------------------------------
    def client_order_id(self, run_id: int, step: int, seq: int) -> str:
        return client_order_id(run_id, step, seq, self.prefix)

    def submit(self, order: Order, run_id: int, step: int, seq: int) -> BrokerOrder | Refusal:
        """Send `order` as (run, step, seq): the broker's order (the one sent before,
        `existing=True`, when this client id was used already), or a refusal with the
        broker's reason.

        Only the order itself goes: a `stop_loss` is the loop's to place when the order
        fills (its own (step, seq), as runner.trading does)."""
        cid = self.client_order_id(run_id, step, seq)
        problem = order.problem()
        if problem is not None:
            return Refusal(problem)
        request = _request(order, cid)
        what = f"order {cid} ({order.side.value} {order.quantity} {order.symbol})"
        try:
            raw = self._call(what, lambda: self._client.submit_order(request))
        except APIError as exc:
            if _is_duplicate(exc):
                log.info("alpaca paper: order %s was sent before; using that one", cid)
                found = self.find(cid)
                if found is None:
                    raise BrokerUnavailable(
                        f"alpaca called order {cid} a duplicate but has no such order"
                    ) from None
                return found
            refusal = self._refusal(exc, what)
            log.info("alpaca paper: %s", refusal.reason)
            return refusal
        placed = BrokerOrder.from_raw(_mapping(raw, what))
        log.info("alpaca paper: order %s sent (%s)", cid, placed.status)
        return placed

    def find(self, client_id: str) -> BrokerOrder | None:
        """The broker's order with this client order id; None when it has none."""
        what = f"order {client_id}"
        try:
            raw = self._call(what, lambda: self._client.get_order_by_client_id(client_id))
        except APIError as exc:
            if exc.status_code == 404:
                return None
            raise self._failure(exc, what) from None
        return BrokerOrder.from_raw(_mapping(raw, what), existing=True)

    def cancel(self, client_id: str) -> BrokerOrder | Refusal:
        """Ask the broker to cancel the order: the order as it stands after the ask
        (pending_cancel or canceled; the `canceled` event follows on the stream), or a
        refusal (no such order, or it is not open: filled meanwhile, ...)."""
        found = self.find(client_id)
        if found is None:
            return Refusal(f"alpaca has no order {client_id}")
        if not found.is_open:
            return Refusal(f"order {client_id} is {found.status}, not open")
        what, order_id = f"the cancel of order {client_id}", found.id
        try:
            self._call(what, lambda: self._client.cancel_order_by_id(order_id))
        except APIError as exc:
            return self._refusal(exc, what)
        log.info("alpaca paper: cancel of order %s sent", client_id)
        return self.find(client_id) or found

    def open_orders(self, run_id: int) -> list[BrokerOrder]:
        """This run's open orders at the broker (by client id prefix), oldest first."""
        what = "the open orders"
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=OPEN_ORDERS_LIMIT,
                                   nested=False)
        try:
            raw = self._call(what, lambda: self._client.get_orders(request))
        except APIError as exc:
            raise self._failure(exc, what) from None
        mine = run_prefix(run_id, self.prefix)
        orders = [BrokerOrder.from_raw(o) for o in _mappings(raw, what)
                  if str(o.get("client_order_id", "")).startswith(mine)]
        return sorted(orders, key=lambda o: o.submitted_at or dt.datetime.min.replace(
            tzinfo=dt.UTC))

    def cancel_all_for(self, run_id: int) -> dict[str, BrokerOrder | Refusal]:
        """Cancel this run's open orders, and only them (other runs' orders and the
        account's own stay): by client order id, what each cancel answered."""
        return {o.client_order_id: self.cancel(o.client_order_id)
                for o in self.open_orders(run_id)}

    def positions(self) -> dict[str, BrokerPosition]:
        what = "the positions"
        try:
            raw = self._call(what, self._client.get_all_positions)
        except APIError as exc:
            raise self._failure(exc, what) from None
        return {p.symbol: p for p in (_position(r) for r in _mappings(raw, what))}

    def flatten(self, run_id: int, step: int, first_seq: int, symbols: Iterable[str],
                holdings: Mapping[str, Decimal] | None = None
                ) -> dict[str, BrokerOrder | Refusal]:
        """Close the positions in `symbols` with market orders of this run: the n-th
        symbol's as (run, step, first_seq + n), so a replaced runner that flattens
        again gets the same orders. A position is the run's `holdings` when given, else
        the broker's (the account's); a flat symbol sends nothing. Cancel the run's open
        orders first (`cancel_all_for`): shares they hold cannot be sold."""
        current = None if holdings is not None else self.positions()
        sent: dict[str, BrokerOrder | Refusal] = {}
        for n, symbol in enumerate(symbols):
            if holdings is not None:
                held = holdings.get(symbol, Decimal(0))
            else:
                assert current is not None
                position = current.get(symbol)
                held = position.quantity if position is not None else Decimal(0)
            if held == 0:
                continue
            order = Order.closing(symbol, held)
            sent[symbol] = self.submit(order, run_id, step, first_seq + n)
        return sent

    def reconcile(self, run_id: int) -> Reconciliation:
        """The broker's side of the run after a pod loss: its open orders and the
        positions, for the loop to compare with its ledger before it decides again
        (orders the ledger holds that are no longer open: `find` each, then
        `catch_up` its fills)."""
        return Reconciliation(open_orders=self.open_orders(run_id),
                              positions=self.positions())

    # -- fills -------------------------------------------------------------------------
    def next_event(self, timeout: float | None = None) -> BrokerEvent | None:
        """The next trade update of this book's orders, waiting up to `timeout` s
        (None: forever); None when none came."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def events(self) -> list[BrokerEvent]:
        """Every trade update waiting, without waiting."""
        waiting: list[BrokerEvent] = []
        while True:
            try:
                waiting.append(self._events.get_nowait())
            except queue.Empty:
                return waiting

    def catch_up(self, order: BrokerOrder, recorded_quantity: Decimal = Decimal(0),
                 recorded_notional: Decimal = Decimal(0)) -> BrokerEvent | None:
        """The fill of `order` the ledger does not hold yet (it holds `recorded_quantity`
        for `recorded_notional`), as one event at the average price of that part; None
        when there is none. The stream will not report that part again to this book."""
        parsed = parse_client_order_id(order.client_order_id, self.prefix)
        if parsed is None:
            raise ValueError(f"order {order.client_order_id} is not one of this book's")
        missing = order.filled_quantity - recorded_quantity
        with self._seen_lock:
            self._seen[order.client_order_id] = max(
                self._seen.get(order.client_order_id, (Decimal(0), Decimal(0))),
                (order.filled_quantity, (order.filled_avg_price or Decimal(0))
                 * order.filled_quantity))
        if missing <= 0 or order.filled_avg_price is None:
            return None
        price = (order.filled_avg_price * order.filled_quantity - recorded_notional) / missing
        run_id, step, seq = parsed
        return BrokerEvent(
            event="fill" if order.filled_quantity >= order.quantity else "partial_fill",
            client_order_id=order.client_order_id, run_id=run_id, step=step, seq=seq,
            order=order, price=price, quantity=missing,
            filled_quantity=order.filled_quantity, position_quantity=None,
            timestamp=order.filled_at or order.updated_at or dt.datetime.now(dt.UTC),
            recovered=True)

    async def _on_update(self, message: Any) -> None:
        # The stream's handler, on its event loop: never raise (alpaca-py would log the
        # message and carry on), never block.
        try:
            event = self._event(message["data"])
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            log.warning("alpaca paper: a malformed trade update was dropped (%s)",
                        type(exc).__name__)
            return
        if event is not None:
            self._events.put(event)

    def _event(self, data: Mapping[str, Any]) -> BrokerEvent | None:
        order = BrokerOrder.from_raw(data["order"])
        parsed = parse_client_order_id(order.client_order_id, self.prefix)
        if parsed is None:
            return None  # not an order of ours
        name = str(data["event"])
        price, quantity = _decimal(data.get("price")), _decimal(data.get("qty"))
        cid = order.client_order_id
        with self._seen_lock:
            if name in FILL_EVENTS:
                seen_qty, seen_notional = self._seen.get(cid, (Decimal(0), Decimal(0)))
                if order.filled_quantity <= seen_qty:
                    return None  # reported already (by the stream, or caught up)
                missing = order.filled_quantity - seen_qty
                if quantity != missing or price is None:
                    # a fill the stream did not bring (a reconnect): the unreported part
                    # at its average price, from the order's cumulative figures
                    average = order.filled_avg_price or price or Decimal(0)
                    price = (average * order.filled_quantity - seen_notional) / missing
                    quantity = missing
                self._seen[cid] = (order.filled_quantity, seen_notional + price * quantity)
            elif name in FINAL_STATUSES:
                if (cid, name) in self._done:
                    return None
                self._done.add((cid, name))
        run_id, step, seq = parsed
        return BrokerEvent(
            event=name, client_order_id=cid, run_id=run_id, step=step, seq=seq,
            order=order, price=price if name in FILL_EVENTS else None,
            quantity=quantity if name in FILL_EVENTS else None,
            filled_quantity=order.filled_quantity,
            position_quantity=_decimal(data.get("position_qty")),
            timestamp=_time(data.get("timestamp")) or dt.datetime.now(dt.UTC),
            execution_id=None if data.get("execution_id") is None
            else str(data["execution_id"]))

    # -- REST plumbing -----------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], T]) -> T:
        """One REST call under a fresh retry policy; transport failures (and an
        exhausted 429/5xx) come out as BrokerUnavailable, APIError passes."""
        with self._rest_lock:
            self._adapter.max_retries = _policy(self._deadline)
            started = time.monotonic()
            try:
                return call()
            except requests.JSONDecodeError as exc:
                raise BrokerUnavailable(f"alpaca sent a malformed answer for {what}") from exc
            except requests.RequestException as exc:  # RetryError, ConnectionError...
                waited = time.monotonic() - started
                raise BrokerUnavailable(self._redact(
                    f"alpaca did not answer {what} ({waited:.1f} s, deadline "
                    f"{self._deadline:g} s): {gave_up(exc)}")) from None

    def _refusal(self, exc: APIError, what: str) -> Refusal:
        """A 4xx about one order: the agent's answer. 401, 429, 5xx: raised."""
        status = exc.status_code
        if status is None or status in (401, 429) or status >= 500:
            raise self._failure(exc, what) from None
        return Refusal(self._redact(f"alpaca refused {what}: {_message(exc)}"))

    def _failure(self, exc: APIError, what: str) -> BrokerRefused | BrokerUnavailable:
        status = exc.status_code
        text = self._redact(f"alpaca answered {status} for {what}: {_message(exc)}")
        if status == 401:
            return BrokerRefused(text + ": check the user's Alpaca paper keys")
        if status is None or status == 429 or status >= 500:
            return BrokerUnavailable(text)
        return BrokerRefused(text)

    def _redact(self, text: str) -> str:
        for secret in (self._key_id.get_secret_value(), self._secret_key.get_secret_value()):
            if secret:
                text = text.replace(secret, REDACTED)
        return text


# -- helpers ---------------------------------------------------------------------------


def _request(order: Order, cid: str) -> OrderRequest:
    fields: dict[str, Any] = {
        "symbol": order.symbol,
        "qty": float(order.quantity),
        "side": OrderSide.BUY if order.side in _BUYS else OrderSide.SELL,
        "time_in_force": _TIME_IN_FORCE[order.time_in_force],
        "client_order_id": cid,
    }
    limit = None if order.limit_price is None else float(order.limit_price)
    stop = None if order.stop_price is None else float(order.stop_price)
    if order.type is OrderType.MARKET:
        return MarketOrderRequest(**fields)
    if order.type is OrderType.LIMIT:
        return LimitOrderRequest(**fields, limit_price=limit)
    if order.type is OrderType.STOP:
        return StopOrderRequest(**fields, stop_price=stop)
    return StopLimitOrderRequest(**fields, stop_price=stop, limit_price=limit)


def _is_duplicate(exc: APIError) -> bool:
    if exc.status_code != 422:
        return False
    try:
        if exc.code == DUPLICATE_CODE:
            return True
    except (ValueError, KeyError, TypeError):
        pass
    return "client_order_id must be unique" in _message(exc)


def _message(exc: APIError) -> str:
    try:
        return str(exc.message)
    except (ValueError, KeyError, TypeError):  # the body was not Alpaca's JSON error
        return " ".join(str(exc).split())[:200] or "no reason given"


def _mapping(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise BrokerUnavailable(f"alpaca sent a malformed answer for {what}")
    return raw


def _mappings(raw: Any, what: str) -> list[Mapping[str, Any]]:
    # raw_data=True: a JSON list of objects (the client's annotation names the models)
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise BrokerUnavailable(f"alpaca sent a malformed answer for {what}")
    return raw


def _position(raw: Mapping[str, Any]) -> BrokerPosition:
    quantity = abs(_decimal(raw.get("qty")) or Decimal(0))
    if raw.get("side") == "short":
        quantity = -quantity
    return BrokerPosition(symbol=str(raw["symbol"]), quantity=quantity,
                          avg_entry_price=_decimal(raw.get("avg_entry_price")))


def _decimal(value: Any) -> Decimal | None:
    """A JSON number or numeric string as its own digits; None for null or ""."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"not a number: {value!r}")
    return Decimal(str(value))


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC)


def _stream_loop(stream: TradingStream, thread: threading.Thread
                 ) -> asyncio.AbstractEventLoop | None:
    # alpaca-py sets the stream's loop when its thread begins to run; stopping it needs
    # that loop (TradingStream.stop() would wait up to 5 s for its next receive).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and thread.is_alive():
        loop: asyncio.AbstractEventLoop | None = stream._loop
        if loop is not None and loop.is_running():
            return loop
        time.sleep(0.01)
    return None
