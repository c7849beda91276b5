"""Row <-> record conversion shared by both SQL dialects.

PostgreSQL hands back Decimal, datetime and parsed JSON; SQLite hands back TEXT. Each
reader here accepts both, so one set of queries serves both stores.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from core.records import (
    Batch,
    Decision,
    FireOutcome,
    Model,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderOrigin,
    OrderRecord,
    OrderState,
    OrderType,
    Portfolio,
    PositionRecord,
    Run,
    Schedule,
    ScheduleFire,
    Side,
    TimeInForce,
    Trade,
    TradeStatus,
)
from core.spec import RunSpec
from core.status import RunStatus

Row = dict[str, Any]


def dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def opt_dec(value: Any) -> Decimal | None:
    return None if value is None else dec(value)


def js(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def ts(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def opt_ts(value: Any) -> dt.datetime | None:
    return None if value is None else ts(value)


def holdings_from(value: Any) -> dict[str, Decimal]:
    return {symbol: dec(q) for symbol, q in (js(value) or {}).items()}


def holdings_to(holdings: dict[str, Decimal]) -> dict[str, str]:
    return {symbol: str(q) for symbol, q in sorted(holdings.items()) if q != 0}


def model_from(row: Row) -> Model:
    return Model(
        id=int(row["id"]),
        user_id=row["user_id"],
        signature=row["signature"],
        llm=row["llm"],
        custom_rules=row["custom_rules"],
        custom_instructions=row["custom_instructions"],
        parameters=js(row["parameters"]) or {},
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
    )


def run_from(row: Row) -> Run:
    return Run(
        id=int(row["id"]),
        user_id=row["user_id"],
        model_id=int(row["model_id"]),
        spec=RunSpec.model_validate(js(row["spec"])),
        status=RunStatus(row["status"]),
        status_reason=row["status_reason"],
        steps_total=int(row["steps_total"]),
        steps_done=int(row["steps_done"]),
        created_at=ts(row["created_at"]),
        admitted_at=opt_ts(row["admitted_at"]),
        started_at=opt_ts(row["started_at"]),
        finished_at=opt_ts(row["finished_at"]),
        stop_requested_at=opt_ts(row["stop_requested_at"]),
        result=js(row["result"]),
        idempotency_key=row["idempotency_key"],
        attempts=int(row["attempts"]),
        decider=row.get("decider"),
        decider_reason=row.get("decider_reason"),
        batch_id=None if row.get("batch_id") is None else int(row["batch_id"]),
        schedule_id=None if row.get("schedule_id") is None else int(row["schedule_id"]),
    )


def schedule_from(row: Row) -> Schedule:
    return Schedule(id=int(row["id"]), user_id=row["user_id"], model_id=int(row["model_id"]),
                    name=row["name"], cron=row["cron"], template=js(row["template"]) or {},
                    make_up_seconds=int(row["make_up_seconds"]), paused=bool(row["paused"]),
                    created_at=ts(row["created_at"]), fired_through=ts(row["fired_through"]))


def fire_from(row: Row) -> ScheduleFire:
    return ScheduleFire(schedule_id=int(row["schedule_id"]), due_at=ts(row["due_at"]),
                        outcome=FireOutcome(row["outcome"]),
                        run_id=None if row["run_id"] is None else int(row["run_id"]),
                        reason=row["reason"], recorded_at=ts(row["recorded_at"]))


def batch_from(row: Row) -> Batch:
    return Batch(id=int(row["id"]), user_id=row["user_id"], name=row["name"],
                 template=js(row["template"]) or {}, created_at=ts(row["created_at"]),
                 idempotency_key=row["idempotency_key"])


def trade_from(row: Row) -> Trade:
    return Trade(
        id=int(row["id"]),
        run_id=int(row["run_id"]),
        step=int(row["step"]),
        seq=int(row["seq"]),
        bar_time=ts(row["bar_time"]),
        filled_at=opt_ts(row["filled_at"]),
        side=Side(row["side"]),
        symbol=row["symbol"],
        quantity=dec(row["quantity"]),
        price=dec(row["price"]),
        fees=dec(row["fees"]),
        status=TradeStatus(row["status"]),
        reason=row["reason"],
        cash_after=dec(row["cash_after"]),
        reasoning=row["reasoning"],
        created_at=ts(row["created_at"]),
        order_id=opt_int(row.get("order_id")),
    )


def opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def order_from(row: Row) -> OrderRecord:
    return OrderRecord(
        id=int(row["id"]),
        run_id=int(row["run_id"]),
        step=int(row["step"]),
        seq=int(row["seq"]),
        bar_time=ts(row["bar_time"]),
        active_from=int(row["active_from"]),
        side=Side(row["side"]),
        symbol=row["symbol"],
        quantity=dec(row["quantity"]),
        type=OrderType(row["type"]),
        limit_price=opt_dec(row["limit_price"]),
        stop_price=opt_dec(row["stop_price"]),
        time_in_force=TimeInForce(row["time_in_force"]),
        stop_loss=opt_dec(row["stop_loss"]),
        origin=OrderOrigin(row["origin"]),
        parent_id=opt_int(row["parent_id"]),
        state=OrderState(row["state"]),
        reason=row["reason"],
        triggered_at=opt_ts(row["triggered_at"]),
        filled_at=opt_ts(row["filled_at"]),
        fill_price=opt_dec(row["fill_price"]),
        reasoning=row["reasoning"],
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
        trade_id=opt_int(row.get("trade_id")),
    )


def order_event_from(row: Row) -> OrderEvent:
    return OrderEvent(
        id=int(row["id"]),
        run_id=int(row["run_id"]),
        order_id=int(row["order_id"]),
        step=int(row["step"]),
        kind=OrderEventKind(row["kind"]),
        bar_time=opt_ts(row["bar_time"]),
        price=opt_dec(row["price"]),
        reason=row["reason"],
        created_at=ts(row["created_at"]),
    )


def position_from(row: Row) -> PositionRecord:
    return PositionRecord(
        run_id=int(row["run_id"]),
        step=int(row["step"]),
        seq=int(row["seq"]),
        bar_time=ts(row["bar_time"]),
        filled_at=ts(row["filled_at"]),
        action=Side(row["action"]),
        symbol=row["symbol"],
        cash=dec(row["cash"]),
        holdings=holdings_from(row["holdings"]),
        reasoning=row["reasoning"],
    )


def portfolio_from(row: Row) -> Portfolio:
    return Portfolio(
        run_id=int(row["run_id"]), cash=dec(row["cash"]), holdings=holdings_from(row["holdings"])
    )


def decision_from(row: Row) -> Decision:
    return Decision(
        run_id=int(row["run_id"]),
        step=int(row["step"]),
        bar_time=ts(row["bar_time"]),
        action=row["action"],
        orders=[Order.from_json(o) for o in js(row["orders"]) or []],
        reasoning=row["reasoning"],
        outcome=row["outcome"],
        latency_ms=float(row["latency_ms"]),
        tokens_in=int(row["tokens_in"]),
        tokens_out=int(row["tokens_out"]),
        cost=opt_dec(row["cost"]),
        tool_calls=js(row["tool_calls"]) or [],
        error=row["error"],
        equity=opt_dec(row["equity"]),
        cash=opt_dec(row["cash"]),
        completed=bool(row["completed"]),
        tokens_cached=int(row["tokens_cached"] or 0),
        decided_at=None if row["decided_at"] is None else ts(row["decided_at"]),
        cancels=[int(i) for i in js(row.get("cancels")) or []],
        close_all=bool(row.get("close_all") or False),
    )
