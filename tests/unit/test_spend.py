"""The spend arithmetic: money text, days, budgets' precedence, unknown costs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.errors import InvalidSpec
from core.records import Model, Run
from core.spend import Spend, day_window, over_daily_limit, plain, usd, utc_day
from core.status import RunStatus
from runner.budget import Budget
from runner.settings import RunnerSettings
from tests.factories import daily_spec

NOW = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)


def model(parameters: dict[str, object] | None = None) -> Model:
    return Model(id=1, user_id="u", signature="m", llm="openai/gpt-4.1-mini",
                 custom_rules=None, custom_instructions=None, parameters=parameters or {},
                 created_at=NOW, updated_at=NOW)


def run(**spec: object) -> Run:
    return Run(id=1, user_id="u", model_id=1, spec=daily_spec(**spec),
               status=RunStatus.RUNNING, status_reason=None, steps_total=10, steps_done=0,
               created_at=NOW, admitted_at=None, started_at=None, finished_at=None,
               stop_requested_at=None, result=None)


def test_money_reads_as_people_write_it() -> None:
    assert usd(Decimal("0.06000000")) == "$0.06"
    assert usd(Decimal("1234.5")) == "$1,234.50"
    assert usd(Decimal("0.0012")) == "$0.0012"  # under a cent: every digit
    assert str(plain(Decimal("0.06000000"))) == "0.06"
    assert str(plain(Decimal("100.000"))) == "100"  # never 1E+2


def test_a_day_is_the_utc_day() -> None:
    late_in_new_york = dt.datetime(2026, 11, 25, 22, 30, tzinfo=dt.timezone(
        dt.timedelta(hours=-5)))
    assert utc_day(late_in_new_york) == dt.date(2026, 11, 26)
    start, end = day_window(dt.date(2026, 11, 26))
    assert (start.isoformat(), end - start) == ("2026-11-26T00:00:00+00:00",
                                                dt.timedelta(days=1))
    assert "($5.02 of $5.00 on 2026-11-26 UTC)" in over_daily_limit(
        Decimal("5.02"), Decimal("5"), dt.date(2026, 11, 26))


def test_decisions_without_a_cost_are_counted_as_unknown() -> None:
    spent = Spend().plus(150, Decimal("0.01")).plus(150, None).plus(0, None)
    assert (spent.decisions, spent.tokens_in, spent.cost_usd, spent.unknown_cost) == (
        3, 300, Decimal("0.01"), 1)


def test_the_spec_then_the_model_then_the_settings() -> None:
    settings = RunnerSettings(max_cost_usd=Decimal("9"), max_tokens=9)
    assert Budget.of(run(), model(), settings) == Budget(Decimal("9"), 9)
    assert Budget.of(run(), model({"budget": {"max_tokens": 5}}), settings) == Budget(
        Decimal("9"), 5)
    assert Budget.of(run(max_cost_usd=Decimal("0.5")), model(
        {"budget": {"max_cost_usd": 2}}), settings) == Budget(Decimal("0.5"), 9)
    assert Budget.of(run(), model(), RunnerSettings()) == Budget(None, None)


@pytest.mark.parametrize("budget", [{"max_cost_usd": -1}, {"max_tokens": 0}, {"max_usd": 1},
                                    "lots"])
def test_a_bad_model_budget_is_refused_with_where(budget: object) -> None:
    with pytest.raises(InvalidSpec, match=r"parameters\.budget of model 'm'"):
        Budget.of(run(), model({"budget": budget}), RunnerSettings())
