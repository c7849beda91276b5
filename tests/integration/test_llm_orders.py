"""The llm decider's order tools through the real ChatOpenAI client against the local
OpenAI-compatible server: short, cover, limit, stop and stop-limit orders, a stop-loss,
cancel, open_orders and close_all act on the run's ledger, and every refusal (a short
over the margin, a cancel of an order that is not there, a bad argument) comes back to
the model as the tool's answer."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from core.eventlog import EventLog, EventType
from core.records import OrderOrigin, OrderState, OrderType, Side, TimeInForce, TradeStatus
from core.store import Store
from runner.session import Ending
from tests.factories import daily_spec
from tests.fakes.openai_server import ChatRequest, FakeOpenAI, Reply
from tests.integration.test_llm_decider import (
    JAN,
    llm_run,
    llm_settings,
    play,
    session_for,
)

CENT = Decimal("0.01")


def answers(request: ChatRequest) -> list[dict[str, Any]]:
    """The tool answers of this step so far (the messages after its prompt), in order."""
    messages = request.messages
    start = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return [json.loads(m["content"]) for m in messages[start:] if m["role"] == "tool"]


def test_every_order_tool_acts_on_the_ledger_and_refusals_are_answers(
        store: Store, event_log: EventLog, fake: FakeOpenAI, api_key: str) -> None:
    spec = daily_spec(**JAN, decider="llm", symbols=["MSFT", "AAPL"])
    run = llm_run(store, "openai/order-agent", spec, cash=Decimal(20_000),
                  parameters={"max_tool_calls": 6})
    session = session_for(store, event_log, run, llm_settings(fake, api_key))
    msft, aapl = session.bars["MSFT"], session.bars["AAPL"]
    # A buy limit between bar 1's low and its open: it fills on bar 1, at the limit.
    limit = ((msft[1].low + msft[1].open) / 2).quantize(CENT)
    assert msft[1].low <= limit < msft[1].open
    far_below = float((msft[0].close / 2).quantize(CENT))
    far_above = float((aapl[0].close * 2).quantize(CENT))
    seen: dict[int, list[dict[str, Any]]] = {}

    # Each step: its first calls; after the answers, what the script does next.
    def script(request: ChatRequest) -> Reply:
        step = request.step
        assert step is not None
        done = answers(request)
        seen[step] = done
        if step == 0 and not done:
            return Reply(tool_calls=[
                ("buy", {"symbol": "MSFT", "quantity": 10, "stop_loss": far_below}),
                ("place_limit_order", {"side": "buy", "symbol": "MSFT", "quantity": 5,
                                       "limit_price": float(limit)})])
        if step == 1 and not done:
            return Reply.call("place_stop_order", side="sell", symbol="MSFT", quantity=3,
                              stop_price=far_below, time_in_force="gtc")
        if step == 1 and len(done) == 1:
            return Reply.call("cancel_order", order_id=done[0]["order_id"],
                              reason="changed my mind")
        if step == 2 and not done:
            return Reply(tool_calls=[("cancel_order", {"order_id": 987_654}),
                                     ("open_orders", {}),
                                     ("place_limit_order", {"side": "hold", "symbol": "MSFT",
                                                            "quantity": 1,
                                                            "limit_price": 1})])
        if step == 3 and not done:
            return Reply(tool_calls=[("short", {"symbol": "AAPL", "quantity": 1_000}),
                                     ("short", {"symbol": "AAPL", "quantity": 4}),
                                     ("portfolio", {})])
        if step == 4 and not done:
            return Reply(tool_calls=[
                ("cover", {"symbol": "AAPL", "quantity": 1}),
                ("place_stop_order", {"side": "cover", "symbol": "AAPL", "quantity": 3,
                                      "stop_price": far_above,
                                      "limit_price": far_above + 1,
                                      "time_in_force": "gtc"})])
        if step == 5 and not done:
            return Reply.call("close_all", reason="flat for the weekend")
        if done:
            return Reply.text(f"Done: {len(done)} tool answer(s).")
        return Reply.text("Holding: no signal.")

    fake.script("order-agent", script)
    assert play(session) is Ending.COMPLETED

    # Step 0: a filled buy with its stop-loss order; a limit order open from bar 1 on.
    bought, placed = seen[0]
    assert (bought["status"], bought["side"], Decimal(bought["price"])) == (
        "filled", "buy", msft[1].open)
    assert placed["status"] == "open" and placed["type"] == "limit"
    assert Decimal(placed["limit_price"]) == limit and placed["time_in_force"] == "day"

    orders = {o.id: o for o in store.list_orders(run.id)}
    stop_loss = orders[bought["stop_loss_order_id"]]
    assert (stop_loss.origin, stop_loss.parent_id, stop_loss.side, stop_loss.type,
            stop_loss.stop_price, stop_loss.time_in_force) == (
        OrderOrigin.STOP_LOSS, bought["order_id"], Side.SELL, OrderType.STOP,
        Decimal(str(far_below)), TimeInForce.GTC)
    filled_limit = orders[placed["order_id"]]
    assert filled_limit.state is OrderState.FILLED and filled_limit.fill_price == limit
    assert filled_limit.filled_at == msft[1].time

    # Step 1: a GTC stop placed, then cancelled with the id its answer gave.
    stop, cancelled = seen[1]
    assert stop["type"] == "stop" and stop["time_in_force"] == "gtc"
    assert cancelled["status"] == "cancelled" and cancelled["order_id"] == stop["order_id"]
    assert "changed my mind" in str(orders[stop["order_id"]].reason)

    # Step 2: refusals as answers; nothing written for them.
    unknown, book, bad_side = seen[2]
    assert unknown == {"status": "refused", "order_id": 987_654,
                       "reason": "no order 987654 in this run"}
    assert [o["order_id"] for o in book["open_orders"]] == [stop_loss.id]
    assert book["open_orders"][0]["placed_by"] == "stop_loss"
    assert bad_side["status"] == "rejected" and "side must be one of" in bad_side["reason"]

    # Step 3: a short over the initial margin is refused with the reason; a small one fills.
    too_big, small, portfolio = seen[3]
    assert too_big["status"] == "refused" and too_big["side"] == "short"
    assert too_big["reason"].startswith("margin: shorting 1000 AAPL")
    assert small["status"] == "filled" and Decimal(small["price"]) == aapl[4].open
    assert portfolio["holdings"]["AAPL"] == "-4" and Decimal(portfolio["short_value"]) > 0

    # Step 4: a partial cover; a stop-limit to cover the rest, far above: it never triggers.
    covered, stop_limit = seen[4]
    assert covered["status"] == "filled" and covered["side"] == "cover"
    assert (stop_limit["type"], stop_limit["status"]) == ("stop_limit", "open")

    # Step 5: close_all cancels both open orders and flattens both positions.
    closed = seen[5][0]
    assert sorted(closed["cancelled_order_ids"]) == sorted([stop_loss.id,
                                                            stop_limit["order_id"]])
    assert sorted((t["side"], t["symbol"], t["quantity"]) for t in closed["trades"]) == [
        ("cover", "AAPL", "3"), ("sell", "MSFT", "15")]
    assert store.get_portfolio(run.id).holdings == {}

    # The ledger: every order the tools made, in the order they made them.
    ledger = [(o.step, o.side, o.type, o.state) for o in store.list_orders(run.id)]
    assert ledger == [
        (0, Side.BUY, OrderType.MARKET, OrderState.FILLED),
        (0, Side.SELL, OrderType.STOP, OrderState.CANCELLED),  # the stop-loss, by close_all
        (0, Side.BUY, OrderType.LIMIT, OrderState.FILLED),
        (1, Side.SELL, OrderType.STOP, OrderState.CANCELLED),
        (3, Side.SHORT, OrderType.MARKET, OrderState.REFUSED),
        (3, Side.SHORT, OrderType.MARKET, OrderState.FILLED),
        (4, Side.COVER, OrderType.MARKET, OrderState.FILLED),
        (4, Side.COVER, OrderType.STOP_LIMIT, OrderState.CANCELLED),
        (5, Side.SELL, OrderType.MARKET, OrderState.FILLED),
        (5, Side.COVER, OrderType.MARKET, OrderState.FILLED),
    ]
    trades = store.list_trades(run.id, limit=100)
    assert [(t.step, t.side, t.status) for t in trades] == [
        (0, Side.BUY, TradeStatus.FILLED), (0, Side.BUY, TradeStatus.FILLED),
        (3, Side.SHORT, TradeStatus.REFUSED), (3, Side.SHORT, TradeStatus.FILLED),
        (4, Side.COVER, TradeStatus.FILLED), (5, Side.SELL, TradeStatus.FILLED),
        (5, Side.COVER, TradeStatus.FILLED)]
    assert all(t.order_id is not None for t in trades)

    # What was decided: a step that only placed or cancelled orders did not hold.
    decisions = store.list_decisions(run.id, limit=100)
    assert [(d.action, d.outcome) for d in decisions[:7]] == [
        ("buy", "trade"), ("cancel,sell", "trade"), ("hold", "hold"), ("short", "trade"),
        ("cover", "trade"), ("close_all,cover,sell", "trade"), ("hold", "hold")]
    assert [c["name"] for c in decisions[2].tool_calls] == [
        "cancel_order", "open_orders", "place_limit_order"]

    # The model was told its open orders: step 1's prompt shows the stop-loss.
    prompt = next(r for r in fake.requests_for("order-agent")
                  if r.step == 1 and r.last_role == "user").text_of("user")
    assert f"#{stop_loss.id} stop sell 10 MSFT stop {far_below}" in prompt
    assert f"stop-loss of #{bought['order_id']}" in prompt

    # Events carry the orders: the limit order placed at step 0, filled on bar 1.
    changes = [(e.data["order_id"], e.data["event"]) for e in event_log.read(run.id, count=2000)
               if e.type is EventType.ORDER]
    assert [c for c in changes if c[0] == placed["order_id"]] == [
        (placed["order_id"], "placed"), (placed["order_id"], "filled")]
