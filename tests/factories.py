"""Factory helpers for test data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from core.records import Model, Run
from core.spec import RunSpec
from core.status import RunStatus
from core.store import Store
from core.store.run_status import RunStatusWrites


def run_status(store: Store) -> RunStatusWrites:
    """The status writes the lifecycle makes, for tests that set a run's status directly."""
    return RunStatusWrites(store)


def make_model(store: Store, user_id: str = "user-a", signature: str = "sig", **kw: Any) -> Model:
    return store.create_model(user_id, signature, **kw)


def intraday_spec(day: dt.date = dt.date(2025, 3, 3), **kw: Any) -> RunSpec:
    kw.setdefault("symbols", ["AAPL"])
    kw.setdefault("decider_params", {"fast": 3, "slow": 10})
    kw.setdefault("data", "synthetic")
    return RunSpec(mode="intraday", date=day, **kw)  # type: ignore[arg-type]


def daily_spec(start: dt.date = dt.date(2024, 1, 2), end: dt.date = dt.date(2024, 6, 28),
               **kw: Any) -> RunSpec:
    kw.setdefault("symbols", ["MSFT"])
    kw.setdefault("data", "synthetic")
    return RunSpec(mode="daily", start=start, end=end, **kw)  # type: ignore[arg-type]


def make_run(store: Store, spec: RunSpec | None = None, *, user_id: str = "user-a",
             model: Model | None = None, admit: bool = True,
             cash: Decimal | None = None) -> Run:
    spec = spec or intraday_spec()
    if cash is not None:
        spec = spec.model_copy(update={"initial_cash": cash})
    model = model or make_model(store, user_id, f"sig-{dt.datetime.now().timestamp()}")
    run, _ = store.create_run(user_id, model.id, spec, spec.step_count())
    if admit:
        run = run_status(store).transition(run.id, RunStatus.ADMITTED)
    return run
