"""The seeded random trader: the same seed makes the same trades on the same bars, from
any step on, whatever the clock or the process's global random state; long or flat only,
sized as the SMA baseline sizes. And the batch matrix's repeats, seeds and baselines."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

import pytest
from pydantic import ValidationError

from api.batch_schemas import MAX_BATCH_RUNS, BatchCreate
from core.bars import Bar
from core.errors import InvalidSpec
from core.records import Model, Portfolio, Run, Side
from core.spec import DeciderKind, RunSpec, replay_mismatch
from core.status import RunStatus
from core.store import Store
from runner.deciders.base import StepBroker, StepContext
from runner.deciders.baselines import RandomTrader, affordable
from runner.deciders.factory import build_decider
from runner.marketdata import timeline_for
from runner.marketdata.synthetic import SyntheticMarketData

NOW = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)
Trades = list[tuple[int, str, str, Decimal]]


def run_of(spec: RunSpec) -> Run:
    return Run(id=1, user_id="u", model_id=1, spec=spec, status=RunStatus.RUNNING,
               status_reason=None, steps_total=390, steps_done=0, created_at=NOW,
               admitted_at=None, started_at=None, finished_at=None, stop_requested_at=None,
               result=None)


MODEL = Model(id=1, user_id="u", signature="alpha", llm=None, custom_rules=None,
              custom_instructions=None, parameters={}, created_at=NOW, updated_at=NOW)


def spec(symbols: tuple[str, ...] = ("AAPL", "MSFT"), **kw: Any) -> RunSpec:
    return RunSpec.model_validate({"mode": "intraday", "date": "2025-03-03",
                                   "symbols": list(symbols), "decider": "random",
                                   "data": "synthetic", **kw})


def play(trader: RandomTrader, run_spec: RunSpec, *, first_step: int = 0,
         last_step: int | None = None,
         portfolio: Portfolio | None = None) -> tuple[Trades, Portfolio]:
    """The session's decisions (steps first_step..last_step), each filled at its bar's
    close (no fee): what the trader asked for, step by step, and the portfolio after."""
    bars = {s: SyntheticMarketData(run_spec.seed).bars(s, timeline_for(run_spec))
            for s in run_spec.symbols}
    run = run_of(run_spec)
    book = portfolio or Portfolio(run_id=1, cash=run_spec.initial_cash)
    cash, holdings = book.cash, dict(book.holdings)
    trades: Trades = []
    end = len(bars[run_spec.symbols[0]]) if last_step is None else last_step + 1
    for step in range(first_step, end):
        history: dict[str, Sequence[Bar]] = {s: b[:step + 1] for s, b in bars.items()}
        ctx = StepContext(run=run, model=MODEL, step=step, steps_total=390,
                          bar_time=history[run_spec.symbols[0]][-1].time, history=history,
                          portfolio=Portfolio(1, cash, dict(holdings)),
                          recent_trades=[], broker=cast(StepBroker, None))
        decision = trader.decide(ctx)
        assert (decision.outcome == "trade") == bool(decision.orders), decision
        for order in decision.orders:
            price = ctx.price(order.symbol)
            sign = 1 if order.side is Side.BUY else -1
            cash -= sign * order.quantity * price
            holdings[order.symbol] = holdings.get(order.symbol, Decimal(0)) + sign * order.quantity
            assert cash >= 0 and holdings[order.symbol] >= 0  # long or flat only
            trades.append((step, order.symbol, order.side.value, order.quantity))
    return trades, Portfolio(1, cash, holdings)


def test_the_same_seed_makes_the_same_trades_and_another_seed_others() -> None:
    first, end = play(RandomTrader(7), spec(seed=7))
    again, end_again = play(RandomTrader(7), spec(seed=7))
    assert first == again and end == end_again
    # ~10% of 390 steps x 2 symbols flip a position.
    assert 40 <= len(first) <= 120, len(first)
    assert {side for _, _, side, _ in first} == {"buy", "sell"}
    assert {symbol for _, symbol, _, _ in first} == {"AAPL", "MSFT"}
    other, _ = play(RandomTrader(8), spec(seed=7))  # the same bars, another seed
    assert [t[:3] for t in other] != [t[:3] for t in first]
    # A symbol's draws are its own: alone it trades when it did beside MSFT.
    alone, _ = play(RandomTrader(7), spec(("AAPL",), seed=7))
    assert [t[:3] for t in alone] == [t[:3] for t in first if t[1] == "AAPL"]


def test_draws_depend_on_seed_session_symbol_and_step_only() -> None:
    trader = RandomTrader(3)
    draws = [trader.draw("2025-03-03", "AAPL", step) for step in range(50)]
    random.seed(12345)  # the process's global random state plays no part
    random.random()
    assert [RandomTrader(3).draw("2025-03-03", "AAPL", s) for s in range(50)] == draws
    assert all(0 <= d < 1 for d in draws) and len(set(draws)) == 50
    assert trader.draw("2025-03-04", "AAPL", 0) != draws[0]
    assert trader.draw("2025-03-03", "MSFT", 0) != draws[0]
    assert RandomTrader(4).draw("2025-03-03", "AAPL", 0) != draws[0]


def test_a_resumed_session_decides_its_remaining_steps_as_before() -> None:
    run_spec = spec(seed=11)
    whole, end = play(RandomTrader(11), run_spec)
    # A checkpoint after step 199; a new process (a new trader) plays on from step 200.
    before, checkpoint = play(RandomTrader(11), run_spec, last_step=199)
    after, resumed = play(RandomTrader(11), run_spec, first_step=200, portfolio=checkpoint)
    assert before and after and before + after == whole and resumed == end


def test_trade_probability_bounds_and_sizing() -> None:
    never, end = play(RandomTrader(1, trade_probability=0.0), spec(seed=1))
    assert never == [] and end.cash == Decimal(100000)
    always, _ = play(RandomTrader(1, trade_probability=1.0), spec(("AAPL",), seed=1))
    assert [side for _, _, side, _ in always[:4]] == ["buy", "sell", "buy", "sell"]
    assert [step for step, *_ in always[:4]] == [0, 1, 2, 3]
    first_close = SyntheticMarketData(1).bars("AAPL", timeline_for(spec(seed=1)))[0].close
    assert always[0][3] == affordable(Decimal(100000), first_close)
    for bad in ({"seed": True}, {"seed": 1, "trade_probability": 1.5},
                {"seed": 1, "trade_probability": float("nan")},
                {"seed": 1, "size_buffer": Decimal(0)}):
        with pytest.raises(ValueError):
            RandomTrader(**bad)


def test_the_factory_builds_it_from_the_run_seed_and_its_params() -> None:
    store = cast(Store, None)  # only a replay reads the store
    trader = build_decider(DeciderKind.RANDOM, run_of(spec(seed=42, decider_params={
        "trade_probability": 0.25})), MODEL, store)
    assert isinstance(trader, RandomTrader) and trader.name == "random"
    assert (trader.seed, trader.trade_probability) == (42, 0.25)
    default = build_decider(DeciderKind.RANDOM, run_of(spec(seed=5)), MODEL, store)
    assert isinstance(default, RandomTrader) and default.trade_probability == 0.1
    with pytest.raises(InvalidSpec, match="bad decider_params for random"):
        build_decider(DeciderKind.RANDOM, run_of(spec(decider_params={
            "trade_probability": "often"})), MODEL, store)


# -- the batch matrix: repeats, seeds, baselines ----------------------------------------
def batch(**kw: Any) -> BatchCreate:
    return BatchCreate.model_validate({
        "model_ids": [1, 2], "symbols": ["AAPL"], "dates": ["2025-03-03", "2025-03-04"],
        "decider": "random", "data": "synthetic", "repeats": 3, "seed": 100, **kw})


def test_a_batch_repeats_each_cell_with_its_seed_and_adds_the_baselines_once() -> None:
    body = batch()
    cells = body.cells()
    assert body.size == len(cells) == 2 * 1 * 2 * 3 + 1 * 2 * 3
    specs = [body.spec_of(c) for c in cells]
    models = [(c, s) for c, s in zip(cells, specs, strict=True) if not s.baseline]
    assert [(c.model_id, s.date, s.repeat, s.seed) for c, s in models] == [
        (m, dt.date(2025, 3, d), k, 100 + k) for m in (1, 2) for d in (3, 4)
        for k in range(3)]
    assert {s.decider for _, s in models} == {DeciderKind.RANDOM}
    baselines = [(c, s) for c, s in zip(cells, specs, strict=True) if s.baseline]
    assert [(c.model_id, s.date, s.decider, s.seed, s.repeat) for c, s in baselines] == [
        (1, dt.date(2025, 3, d), kind, 100, 0) for d in (3, 4)
        for kind in (DeciderKind.BUY_AND_HOLD, DeciderKind.SMA_CROSSOVER, DeciderKind.RANDOM)]
    assert all(s.decider_params == {} and s.data == specs[0].data for _, s in baselines)
    # Stored with the spec (a label of the run) only where it says something.
    assert specs[1].stored()["repeat"] == 1 and "baseline" not in specs[1].stored()
    assert "repeat" not in specs[0].stored() and baselines[0][1].stored()["baseline"] is True
    assert RunSpec.model_validate(specs[1].stored()) == specs[1]

    plain = batch(repeats=1, baselines=False)
    assert plain.size == 4 and {plain.spec_of(c).seed for c in plain.cells()} == {100}
    assert batch().model_dump()["baselines"] is True  # the default
    assert BatchCreate.model_validate({"model_ids": [1], "symbols": ["AAPL"],
                                       "dates": ["2025-03-03"]}).repeats == 1


def test_repeats_and_baselines_count_against_the_cap_and_the_seed_range() -> None:
    ok = batch(model_ids=list(range(1, 21)), symbols=["AAPL"], repeats=20,
               dates=["2025-03-03"], baselines=True)
    assert ok.size == 20 * 20 + 3 <= MAX_BATCH_RUNS
    with pytest.raises(ValidationError, match="repeats and baselines count"):
        batch(model_ids=list(range(1, 21)), symbols=["AAPL", "MSFT"], repeats=13,
              dates=["2025-03-03"])
    for bad in (0, 21, True, "3"):
        with pytest.raises(ValidationError):
            batch(repeats=bad)
    with pytest.raises(ValidationError, match="give a lower seed"):
        batch(seed=2**31 - 2, repeats=3)
    assert batch(seed=2**31 - 3, repeats=3).cells()[2].seed == 2**31 - 1


def test_a_baseline_spec_names_a_baseline_decider_and_a_replay_of_a_repeat_fits() -> None:
    with pytest.raises(ValidationError, match="baseline run plays"):
        spec(decider="llm", baseline=True)
    with pytest.raises(ValidationError, match="baseline run plays"):
        spec(decider=None, baseline=True)
    assert all(DeciderKind(k).is_baseline for k in ("buy_and_hold", "sma_crossover", "random"))
    assert not DeciderKind.LLM.is_baseline and not DeciderKind.REPLAY.is_baseline
    repeat = spec(("AAPL",), seed=102, repeat=2)
    replay = spec(("AAPL",), seed=102, repeat=2, decider="replay",
                  decider_params={"source_run_id": 1})
    assert replay_mismatch(repeat, replay) is None
    # Synthetic bars come from seed - repeat: the cell's bars (100), whatever the repeat.
    assert repeat.bars_seed == 100
    same_bars = spec(("AAPL",), seed=100, decider="replay", decider_params={"source_run_id": 1})
    assert replay_mismatch(repeat, same_bars) is None
    other = spec(("AAPL",), seed=102, decider="replay", decider_params={"source_run_id": 1})
    assert replay_mismatch(repeat, other) == "has other synthetic seed 100 (this run: 102)"
    with pytest.raises(ValidationError, match="seed must be at least repeat"):
        spec(("AAPL",), seed=1, repeat=2)
    assert "synthetic seed 100 (this run: 98)" in str(replay_mismatch(
        repeat, replay.model_copy(update={"seed": 100})))
