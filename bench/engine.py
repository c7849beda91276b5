"""`python -m bench engine`: the trading engine's own costs.

- runner overhead per step (SMA baseline, decider cost excluded by its triviality) with
  persistence on PostgreSQL and on SQLite, and a whole 390-step intraday session as a
  real `python -m runner` process;
- trade latency p50/p99 and trades/s across 8 concurrent runs on PostgreSQL, and
  across 50 (`trade_latency_50`), each run in a process of its own as its runner is;
  the 8 runs' rate beside its ceiling in the same run (`trade_sql_ceiling`: the same
  writes from pgbench, bench.trade_floor);
- the same SMA crossover on the same GOOG daily bars in backtesting.py and in tickrun:
  the same trades (entry/exit dates and prices), and the speed ratio.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench._support import admit, emit, percentile, start
from core.eventlog.redis_log import RedisEventLog
from core.eventlog.sqlite_log import SqliteEventLog
from core.records import Order, Side
from core.spec import RunSpec
from core.store import Store, open_store
from core.store.sqlite import SqliteStore
from runner.events import EventPublisher
from runner.marketdata import market_data_for, timeline_for
from runner.session import Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from runner.trading import TradingService

INTRADAY = {"mode": "intraday", "symbols": ["AAPL"], "date": "2025-03-03",
            "decider": "sma_crossover", "decider_params": {"fast": 3, "slow": 10},
            "data": "synthetic"}


def _new_run(store: Store, spec: RunSpec, user: str = "bench") -> int:
    model = store.create_model(user, f"sma-{time.time_ns()}")
    run, _ = store.create_run(user, model.id, spec, spec.step_count())
    admit(store, run.id)
    return run.id


def _play_in_process(store: Store, publisher_log: Any, spec: RunSpec,
                     data_dir: Path = Path("data")) -> tuple[float, int, Any]:
    from runner.deciders.factory import build_decider

    run_id = _new_run(store, spec)
    run = start(store, run_id, str(spec.decider))
    timeline = timeline_for(spec)
    provider = market_data_for(spec, store, data_dir)
    bars = {s: provider.bars(s, timeline) for s in spec.symbols}
    decider = build_decider(spec.decider, run, store.get_model(run.model_id), store)  # type: ignore[arg-type]
    session = Session(store=store, publisher=EventPublisher(publisher_log, run_id), run=run,
                      model=store.get_model(run.model_id), decider=decider, timeline=timeline,
                      bars=bars, stop=StopSignal(), settings=RunnerSettings(recent_trades=0))
    began = time.perf_counter()
    session.play()
    elapsed = time.perf_counter() - began
    return elapsed, len(timeline), store.list_trades(run_id, limit=10**6)


def step_overhead(pg_url: str, redis_url: str, sqlite_path: str) -> dict[str, Any]:
    spec = RunSpec.model_validate(INTRADAY)
    out: dict[str, Any] = {}
    pg = open_store(pg_url)
    seconds, steps, _ = _play_in_process(pg, RedisEventLog(redis_url, prefix="bench"), spec)
    out["postgres_redis_ms_per_step"] = round(seconds / steps * 1000, 3)
    pg.close()
    lite = SqliteStore(sqlite_path)
    seconds, steps, _ = _play_in_process(lite, SqliteEventLog(SqliteStore(sqlite_path)), spec)
    out["sqlite_ms_per_step"] = round(seconds / steps * 1000, 3)
    return out


def session_process(pg_url: str, redis_url: str) -> float:
    store = open_store(pg_url)
    run_id = _new_run(store, RunSpec.model_validate(INTRADAY))
    store.close()
    env = {**os.environ, "TICKRUN_DATABASE_URL": pg_url, "TICKRUN_REDIS_URL": redis_url,
           "TICKRUN_REDIS_KEY_PREFIX": "bench"}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runner", "--run-id", str(run_id)], env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - began


def funded_runs(store: Store, count: int) -> list[int]:
    """`count` admitted runs (consecutive ids) with cash for any number of trades."""
    spec = RunSpec.model_validate({**INTRADAY, "initial_cash": "100000000"})
    return [_new_run(store, spec) for _ in range(count)]


def trade_latency(pg_url: str, runs: int = 8, trades_per_run: int = 250) -> dict[str, Any]:
    """`runs` runs trading at once, each in a process of its own as each run's runner is
    (a Job each): every trade's latency, and the trades of all per second of wall time."""
    store = open_store(pg_url)
    run_ids = funded_runs(store, runs)
    store.close()  # no pool threads across the fork
    ctx = multiprocessing.get_context("fork")
    ready, results = ctx.Barrier(runs + 1), ctx.Queue()
    procs = [ctx.Process(target=_trade_run, args=(pg_url, run_id, trades_per_run, ready,
                                                  results)) for run_id in run_ids]
    for proc in procs:
        proc.start()
    ready.wait(120)  # every runner connected: they trade from now on
    measured = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    flat = [x * 1000 for latencies, _, _ in measured for x in latencies]
    wall = max(end for _, _, end in measured) - min(began for _, began, _ in measured)
    return {"trade_p50_ms": round(percentile(flat, 50), 3),
            "trade_p99_ms": round(percentile(flat, 99), 3),
            "trades_per_s": round(len(flat) / wall, 1), "concurrent_runs": runs}


def _trade_run(pg_url: str, run_id: int, trades: int, ready: Any, results: Any) -> None:
    """One run's runner: its own connection, `trades` trades alternating buy and sell."""
    store = open_store(pg_url, pool_size=1)
    trading = TradingService(store)
    now = dt.datetime.now(dt.UTC)
    latencies: list[float] = []
    ready.wait(120)
    began = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    for seq in range(trades):
        side = Side.BUY if seq % 2 == 0 else Side.SELL
        start_trade = time.perf_counter()
        trading.execute(run_id, seq, 0, Order(side, "AAPL", Decimal(10)),
                        price=Decimal("101.25"), bar_time=now)
        latencies.append(time.perf_counter() - start_trade)
    results.put((latencies, began, time.perf_counter()))
    store.close()


def _sql_ceiling(pg_url: str, trades_per_s: float) -> dict[str, Any]:
    """The same database's ceiling for the 8 runs' trades (bench.trade_floor), and the
    trades' rate as a share of it."""
    from bench.trade_floor import sql_ceiling

    store = open_store(pg_url)
    run_ids = funded_runs(store, 8)
    store.close()
    ceiling = sql_ceiling(pg_url, run_ids)
    return {**ceiling, "share_of_sql_ceiling": round(trades_per_s / ceiling["trades_per_s"], 3)}


def versus_backtesting(sqlite_path: str, fast: int = 10, slow: int = 20) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from backtesting import Backtest, Strategy
        from backtesting.lib import crossover
        from backtesting.test import GOOG

    def sma(values: Any, n: int) -> Any:
        import pandas as pd

        return pd.Series(values).rolling(n).mean()

    class LongOnlySmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, fast)
            self.slow = self.I(sma, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.fast, self.slow) and not self.position:
                self.buy()
            elif crossover(self.slow, self.fast) and self.position:
                self.position.close()

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(GOOG, LongOnlySmaCross, cash=1_000_000, commission=0,
                         finalize_trades=True).run()
    bt_seconds = time.perf_counter() - began
    theirs = [(str(t.EntryTime.date()), float(t.EntryPrice), str(t.ExitTime.date()),
               float(t.ExitPrice)) for t in stats._trades.itertuples()]

    data_dir = Path(tempfile.mkdtemp(prefix="tickrun-goog-"))
    frame = GOOG.reset_index().rename(columns={"index": "time"})
    frame.columns = [c.lower() for c in frame.columns]
    frame.to_csv(data_dir / "GOOG.1d.csv", index=False)
    spec = RunSpec.model_validate({
        "mode": "daily", "symbols": ["GOOG"], "start": str(GOOG.index[0].date()),
        "end": str(GOOG.index[-1].date()), "decider": "sma_crossover", "data": "files",
        "decider_params": {"fast": fast, "slow": slow, "size_buffer": "0.85"},
        "initial_cash": "1000000"})
    lite = SqliteStore(sqlite_path)
    seconds, steps, trades = _play_in_process(lite, SqliteEventLog(SqliteStore(sqlite_path)),
                                              spec, data_dir)
    filled = [t for t in trades if t.filled]
    # backtesting.py closes a position still open at the end (finalize_trades) at the
    # last bar's open; mark ours the same way for the comparison.
    exits = filled[1::2] + ([None] if len(filled) % 2 else [])
    ours = [(float(buy.price), float(sell.price) if sell else float(GOOG.Open.iloc[-1]))
            for buy, sell in zip(filled[::2], exits, strict=True)]
    # backtesting.py stamps a trade with its fill bar, tickrun with its decision bar (it
    # fills at the next open too), so the fill prices are what must agree.
    same = ours == [(b[1], b[3]) for b in theirs]
    if not same:
        diff = [(a, b) for a, b in zip(ours, theirs, strict=False) if a != (b[1], b[3])]
        print(f"first differing trades: {diff[:3]}", file=sys.stderr)
    return {"goog_bars": steps, "backtesting_trades": len(theirs), "tickrun_round_trips": len(ours),
            "refused": sum(not t.filled for t in trades), "same_trades": same,
            "backtesting_seconds": round(bt_seconds, 3), "tickrun_seconds": round(seconds, 3),
            "tickrun_over_backtesting": round(seconds / bt_seconds, 1)}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.servers import start_postgres, start_redis

    pg, redis = start_postgres(), start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="tickrun-bench-"))
    try:
        store = open_store(pg.url())
        store.migrate()
        store.close()
        for name in ("a.db", "b.db"):
            SqliteStore(tmp / name).migrate()
        result: dict[str, Any] = {"bench": "engine"}
        result.update(step_overhead(pg.url(), redis.url(), str(tmp / "a.db")))
        result["session_390_steps_process_s"] = round(session_process(pg.url(), redis.url()), 3)
        result.update(trade_latency(pg.url()))
        result["trade_sql_ceiling"] = _sql_ceiling(pg.url(), result["trades_per_s"])
        # Many runs at once: the same trades from 50 runs' processes.
        many = trade_latency(pg.url(), runs=50, trades_per_run=100)
        result["trade_latency_50"] = {k: v for k, v in many.items() if k != "concurrent_runs"}
        result.update(versus_backtesting(str(tmp / "b.db")))
        for key, value in result.items():
            if key != "bench":
                print(f"{key:32} {value}", file=sys.stderr)
        emit(result)
    finally:
        pg.stop()
        redis.stop()
    return 0
