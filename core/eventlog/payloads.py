"""The data of every event a run's writers append, built in one place so a follower
meets one shape whoever wrote it.

Writers: the lifecycle (status and the final result, for the API, the reconciler and
the runner), the runner (decision, trade, order, progress, log) and the API's
stand-in for a final event that never reached the log. Each payload is a TypedDict,
so mypy checks every key where it is built; the builders hand the event log plain
dicts (its JSON), as the log stores whatever it is given.

A `status` event: the run's status, why (or None), and what the writer adds (the
runner's attempt, decider and data source). A `result` event, always the last: the
final status, why, and the run's result (`RunResult`; None for a run deleted before
its end). The result is written with the run's final status and read back by
`GET /v1/runs/{id}` and `/result`, so this one shape is also what the API serves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NotRequired, TypedDict

from core.contamination import ContaminationMark
from core.metrics import RunMetrics
from core.records import Decision, OrderEvent, OrderRecord, Trade
from core.status import RunStatus


class StatusData(TypedDict, total=False):
    status: str
    reason: str | None


class Benchmark(TypedDict):
    """Buy-and-hold over the same completed steps (only the runner has the bars)."""

    final_equity: str
    return_pct: float
    max_drawdown_pct: float
    sharpe: float | None


class RunResult(TypedDict):
    """A run's result: core.lifecycle.run_result computes it from the ledger for the
    runner and for the controller (a runner that died: `from_ledger`, no benchmark);
    runner.result adds what only the runner knows. The performance keys are
    core.performance.summarize's."""

    final_equity: str
    return_pct: float
    max_drawdown_pct: float
    sharpe: float | None
    trades: int
    refused: int
    win_rate: float | None
    shorts: dict[str, int]
    ending: str  # completed, stopped, failed
    steps_done: int
    steps_total: int
    final_cash: str
    decider: str | None
    decider_reason: str | None
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    cost: str  # of the decisions whose cost is known
    unknown_cost_decisions: int
    decisions_by_outcome: dict[str, int]
    benchmark: Benchmark | None
    data: dict[str, Any]  # core.lifecycle.data_label, and the runner's data quality
    orders: dict[str, int]  # by final state
    lookahead: str  # clean, "N items", possible: core.research.audit
    research: dict[str, Any]  # the audit's counts (dated items, violations, outside calls)
    metrics: RunMetrics  # core.metrics: the standard figures of the run, from its ledger
    # Whether its sessions lie inside its model's training data (core.contamination);
    # None for a run no LLM played.
    contamination: ContaminationMark | None
    from_ledger: NotRequired[bool]  # the controller's, for a runner that died
    budget: NotRequired[dict[str, Any]]  # a run an LLM played: limits and spend
    final_short_value: NotRequired[str]  # what is short at the last close played


class ResultData(TypedDict):
    status: str
    reason: str | None
    result: RunResult | Mapping[str, Any] | None


class DecisionData(TypedDict):
    step: int
    bar_time: str
    action: str
    orders: list[dict[str, Any]]
    cancels: list[int]
    close_all: bool
    reasoning: str | None
    outcome: str
    latency_ms: float
    error: str | None
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    cost: str | None
    tool_calls: list[Any]  # the names of the tools called


class TradeData(TypedDict):
    step: int
    seq: int
    bar_time: str  # the bar it was decided on
    filled_at: str | None  # the bar its price is from (None for a refusal)
    side: str
    symbol: str
    quantity: str
    price: str
    status: str
    reason: str | None
    cash_after: str
    order_id: int | None


class OrderData(TypedDict):
    event: str  # placed, triggered, filled, cancelled, expired, refused
    order_id: int
    step: int | None
    bar_time: str | None
    price: str | None
    reason: str | None
    order: dict[str, Any]  # the order as it is after the change


class StepProgress(TypedDict):
    step: int  # steps done
    total: int
    equity: str
    cash: str
    bar_time: str
    last_action: str
    # A live run's clock: the time the step was done, and how long after its bar closed.
    wall_time: NotRequired[str]
    lag_seconds: NotRequired[float]


class PhaseProgress(TypedDict):
    """Progress before the first step: what the runner is doing (fetching bars)."""

    step: int
    total: int
    phase: str


def status_data(status: RunStatus, reason: str | None,
                details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data: StatusData = {"status": status.value, "reason": reason}
    return {**data, **(details or {})}


def result_data(status: RunStatus | str, reason: str | None,
                result: RunResult | Mapping[str, Any] | None) -> dict[str, Any]:
    """`status` is a word of its own ("deleted") only where the run is gone; `result`
    is a RunResult, or one read back from the store."""
    data: ResultData = {"status": status.value if isinstance(status, RunStatus) else status,
                        "reason": reason, "result": result}
    return dict(data)


def decision_data(d: Decision) -> dict[str, Any]:
    data: DecisionData = {
        "step": d.step, "bar_time": d.bar_time.isoformat(), "action": d.action,
        "orders": [o.to_json() for o in d.orders], "cancels": list(d.cancels),
        "close_all": d.close_all, "reasoning": d.reasoning, "outcome": d.outcome,
        "latency_ms": d.latency_ms, "error": d.error, "tokens_in": d.tokens_in,
        "tokens_out": d.tokens_out, "tokens_cached": d.tokens_cached,
        "cost": _text(d.cost), "tool_calls": [c.get("name") for c in d.tool_calls]}
    return dict(data)


def trade_data(t: Trade) -> dict[str, Any]:
    data: TradeData = {
        "step": t.step, "seq": t.seq, "bar_time": t.bar_time.isoformat(),
        "filled_at": _time(t.filled_at), "side": t.side.value, "symbol": t.symbol,
        "quantity": str(t.quantity), "price": str(t.price), "status": t.status.value,
        "reason": t.reason, "cash_after": str(t.cash_after), "order_id": t.order_id}
    return dict(data)


def order_data(e: OrderEvent, order: OrderRecord) -> dict[str, Any]:
    """What happened to an order, at which step and bar, and the order after it."""
    data: OrderData = {
        "event": e.kind.value, "order_id": e.order_id, "step": e.step,
        "bar_time": _time(e.bar_time), "price": _text(e.price), "reason": e.reason,
        "order": order.to_json()}
    return dict(data)


def step_progress(*, step: int, total: int, equity: Decimal, cash: Decimal,
                  bar_time: dt.datetime, last_action: str,
                  wall_time: dt.datetime | None = None,
                  bar_seconds: int = 60) -> dict[str, Any]:
    """`wall_time`: a live run's now, for its clock and its lag (bar end to now)."""
    data: StepProgress = {"step": step, "total": total, "equity": str(equity),
                          "cash": str(cash), "bar_time": bar_time.isoformat(),
                          "last_action": last_action}
    if wall_time is not None:
        data["wall_time"] = wall_time.isoformat()
        ended = bar_time + dt.timedelta(seconds=bar_seconds)
        data["lag_seconds"] = round((wall_time - ended).total_seconds(), 3)
    return dict(data)


def phase_progress(*, step: int, total: int, phase: str) -> dict[str, Any]:
    data: PhaseProgress = {"step": step, "total": total, "phase": phase}
    return dict(data)


def log_data(level: str, message: str, **details: Any) -> dict[str, Any]:
    """A `log` event: a line for the people following the run."""
    return {"level": level, "message": message, **details}


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
