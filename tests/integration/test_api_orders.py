"""GET /v1/runs/{id}/orders and /orders/{order_id} through real HTTP, on PostgreSQL +
Redis and on SQLite: a run's ledger written through the TradingService (no runner: the
reconciler is off), then listed, filtered by state, paged, and read with its events."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from core.bars import Bar
from core.records import Order, OrderType, Side, TimeInForce
from core.store import open_store
from runner.trading import TradingService
from tests.apiserver import Backend, running_api
from tests.factories import daily_spec, make_model, make_run

pytestmark = pytest.mark.timeout(120)

DAY0 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
DAY1 = dt.datetime(2024, 1, 3, tzinfo=dt.UTC)
SESSIONS = [DAY0.date(), DAY1.date(), dt.date(2024, 1, 4)]
D = Decimal


def write_ledger(backend: Backend) -> dict[str, int]:
    """Decided on day 0: a market buy (filled), a day limit buy that day 1 reaches
    (filled), a day limit it does not reach (expired), a stop (cancelled), a malformed
    limit (refused) and a GTC limit far below (open). Day 1 settles."""
    store = open_store(backend.database_url)
    try:
        run = make_run(store, daily_spec(), model=make_model(store, "user-a", "orders"),
                       admit=False)
        trading = TradingService(store)
        ids: dict[str, int] = {"run": run.id}

        def place(seq: int, order: Order) -> int:
            return trading.place(run.id, 0, seq, order, bar_time=DAY0).id

        ids["market"] = trading.execute(
            run.id, 0, 0, Order(Side.BUY, "MSFT", D(10)), price=D(100), bar_time=DAY0,
            filled_at=DAY1).order_id or 0
        ids["limit"] = place(1, Order(Side.BUY, "MSFT", D(5), OrderType.LIMIT,
                                      limit_price=D("98.50")))
        ids["expiring"] = place(2, Order(Side.BUY, "MSFT", D(5), OrderType.LIMIT,
                                         limit_price=D(90)))
        ids["stop"] = place(3, Order(Side.SELL, "MSFT", D(10), OrderType.STOP,
                                     stop_price=D(80), time_in_force=TimeInForce.GTC))
        trading.cancel(run.id, ids["stop"], step=0, bar_time=DAY0)
        ids["refused"] = place(4, Order(Side.BUY, "MSFT", D(1), OrderType.LIMIT))
        ids["gtc"] = place(5, Order(Side.BUY, "MSFT", D(1), OrderType.LIMIT,
                                    limit_price=D(50), time_in_force=TimeInForce.GTC))
        bar = Bar(DAY1, D(100), D(101), D(97), D(99), D(1000))
        trading.settle_bar(run.id, 1, {"MSFT": bar}, bar_time=DAY1, sessions=SESSIONS,
                           symbols=["MSFT"])
        return ids
    finally:
        store.close()


def test_orders_list_filter_page_and_show_their_events(backend: Backend) -> None:
    ids = write_ledger(backend)
    with running_api(backend, reconcile=False) as api, api.client() as c, \
            api.client("user-b") as b:
        orders = f"/v1/runs/{ids['run']}/orders"
        listed = c.get(orders).json()
        assert [(o["id"], o["state"]) for o in listed] == [
            (ids["market"], "filled"), (ids["limit"], "filled"),
            (ids["expiring"], "expired"), (ids["stop"], "cancelled"),
            (ids["refused"], "refused"), (ids["gtc"], "open")]
        market, limit = listed[0], listed[1]
        assert (market["type"], market["side"], D(market["fill_price"]), market["seq"]) == (
            "market", "buy", D(100), 0)
        assert (limit["type"], D(limit["limit_price"]), D(limit["fill_price"]),
                limit["filled_at"], limit["step"], limit["active_from"]) == (
            "limit", D("98.50"), D("98.50"), "2024-01-03T00:00:00Z", 0, 1)
        assert limit["time_in_force"] == "day" and limit["origin"] == "decider"
        assert limit["trade_id"] is not None and market["trade_id"] is not None
        assert "limit_price" in listed[4]["reason"]  # why the malformed one was refused
        assert listed[3]["stop_price"] is not None and listed[3]["time_in_force"] == "gtc"

        def states(**params: Any) -> list[int]:
            r = c.get(orders, params=params)
            assert r.status_code == 200, r.text
            return [o["id"] for o in r.json()]

        assert states(state="open") == [ids["gtc"]]
        assert states(state="filled") == [ids["market"], ids["limit"]]
        assert states(state="expired") == [ids["expiring"]]
        assert states(state="cancelled") == [ids["stop"]]
        assert states(state="refused") == [ids["refused"]]
        # Keyset pages, of one state too: after the last id seen.
        page1 = states(limit=4)
        page2 = states(limit=4, after_id=page1[-1])
        assert page1 + page2 == [o["id"] for o in listed] and len(page2) == 2
        assert states(state="filled", limit=1, after_id=ids["market"]) == [ids["limit"]]

        bad = c.get(orders, params={"state": "pending"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["loc"] == ["query", "state"]

        # One order with its state changes.
        detail = c.get(f"{orders}/{ids['limit']}").json()
        assert detail["id"] == ids["limit"] and detail["state"] == "filled"
        assert [(e["kind"], e["step"], e["price"] and D(e["price"]))
                for e in detail["events"]] == [("placed", 0, None), ("filled", 1, D("98.50"))]
        cancelled = c.get(f"{orders}/{ids['stop']}").json()
        assert [e["kind"] for e in cancelled["events"]] == ["placed", "cancelled"]
        assert cancelled["reason"] == cancelled["events"][-1]["reason"]
        missing = c.get(f"{orders}/{ids['gtc'] + 1000}")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"

        # A trade names its order.
        trades = c.get(f"/v1/runs/{ids['run']}/trades").json()
        assert {(t["order_id"], t["status"]) for t in trades} == {
            (ids["market"], "filled"), (ids["limit"], "filled")}

        # Another user's run does not exist for them, nor do its orders.
        assert b.get(orders).status_code == 404
        assert b.get(f"{orders}/{ids['limit']}").status_code == 404
        assert c.get("/v1/runs/999999999/orders").status_code == 404
