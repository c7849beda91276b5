"""The ceiling of `bench engine`'s trades: PostgreSQL alone doing what a trade writes.

pgbench (PostgreSQL's own compiled load generator) replays one market trade's
transaction as TradingService sends it on PostgreSQL (runner.trading, core.store.ledger):
BEGIN; the portfolio's lock; the replay check; the order; its trade; the portfolio, the
position and the order's two events in one statement; COMMIT. Each client trades on a
run of its own, as each runner does, all of it in one pipeline (one round trip, against
the ledger's three), prepared, with no Python on the client side: what these cores allow
for those writes at best, in the same run as the trades measured against it.

`python -m bench trade_floor` measures it alone on fresh servers; `bench engine` reports
its trades as a share of it (`share_of_sql_ceiling`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._support import emit

CLIENTS = 8
SECONDS = 10
WARM_UP_S = 3

_ORDER = ("run_id, step, seq, bar_time, active_from, side, symbol, quantity, type, "
          "limit_price, stop_price, time_in_force, stop_loss, origin, parent_id, state, "
          "reason, triggered_at, filled_at, fill_price, reasoning, created_at, updated_at")
_TRADE = ("run_id, step, seq, bar_time, filled_at, side, symbol, quantity, price, fees, "
          "status, reason, cash_after, reasoning, created_at, rule_price, order_id")
_POSITION = "run_id, step, seq, bar_time, filled_at, action, symbol, cash, holdings, reasoning"
_EVENT = "order_id, step, kind, bar_time, price, reason, run_id, created_at"
_ORDER_ID = "currval(pg_get_serial_sequence('orders', 'id'))"

# Each client's steps follow one another from `first_step`, as a runner's do (a client's
# variables last from one transaction to the next); seq 0, as a decision's first order.
SCRIPT = f"""\\set run :first_run + :client_id
\\set step :step + 1
\\set seq 0
\\startpipeline
BEGIN;
SELECT p.*, r.attempts FROM portfolios p JOIN runs r ON r.id = p.run_id WHERE p.run_id = :run FOR UPDATE OF p;
SELECT * FROM trades WHERE run_id = :run AND step = :step AND seq = :seq;
INSERT INTO orders ({_ORDER}) VALUES (:run, :step, :seq, now(), 1, 'buy', 'AAPL', 10, 'market', NULL, NULL, 'day', NULL, 'decider', NULL, 'filled', NULL, NULL, now(), 101.25, NULL, now(), now()) RETURNING *, NULL AS trade_id;
INSERT INTO trades ({_TRADE}) VALUES (:run, :step, :seq, now(), now(), 'buy', 'AAPL', 10, 101.25, 0, 'filled', NULL, 99998987.5, NULL, now(), NULL, {_ORDER_ID}) RETURNING *;
WITH w0 AS (UPDATE portfolios SET cash = 99998987.5, holdings = '{{"AAPL": "10"}}' WHERE run_id = :run), w1 AS (INSERT INTO positions ({_POSITION}) VALUES (:run, :step, :seq, now(), now(), 'buy', 'AAPL', 99998987.5, '{{"AAPL": "10"}}', NULL)) INSERT INTO order_events ({_EVENT}) VALUES ({_ORDER_ID}, :step, 'placed', now(), NULL, NULL, :run, now()), ({_ORDER_ID}, :step, 'filled', now(), 101.25, NULL, :run, now());
COMMIT;
\\endpipeline
"""  # noqa: E501  (pgbench reads one command per line)


def pgbench() -> Path:
    """The newest PostgreSQL's pgbench (Debian's postgresql package ships it)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    if not found:
        raise RuntimeError("pgbench not found under /usr/lib/postgresql/*/bin")
    return found[0]


def sql_ceiling(pg_url: str, run_ids: list[int], seconds: int = SECONDS) -> dict[str, Any]:
    """pgbench's trades per second, one client per run of `run_ids` (consecutive ids of
    runs with portfolios), for `seconds`."""
    first = min(run_ids)
    if sorted(run_ids) != list(range(first, first + len(run_ids))):
        raise ValueError(f"the runs' ids must be consecutive: {run_ids}")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "trade.sql"
        script.write_text(SCRIPT)
        # A warm-up gives each run trades, then statistics (see _analyze); its own steps.
        _pgbench(pg_url, script, len(run_ids), first, WARM_UP_S, first_step=0)
        _analyze(pg_url)
        result = _pgbench(pg_url, script, len(run_ids), first, seconds, first_step=10**8)
    return {**result, "clients": len(run_ids), "seconds": seconds}


def _pgbench(pg_url: str, script: Path, clients: int, first_run: int, seconds: int, *,
             first_step: int) -> dict[str, Any]:
    done = subprocess.run(
        [str(pgbench()), "--no-vacuum", "--protocol=prepared", f"--client={clients}",
         "--jobs=1", f"--time={seconds}", f"--define=first_run={first_run}",
         f"--define=step={first_step}", f"--file={script}", pg_url],
        capture_output=True, text=True, timeout=seconds + 120)
    return parse_pgbench(done.stdout, done.stderr, done.returncode)


def _analyze(pg_url: str) -> None:
    """Statistics for the ledger's tables, with trades in them: on tables never analyzed
    (or analyzed empty) the planner takes a run's other index for the replay check and
    reads every trade of the run per trade, slower with each (README, "Performance,
    second round, fifth session"); a database in use has them from autovacuum."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE portfolios, runs, trades, orders, order_events, positions")


def parse_pgbench(out: str, err: str, returncode: int) -> dict[str, Any]:
    """pgbench's report: transactions per second, latency, failed transactions."""
    tps = re.search(r"^tps = ([\d.]+)", out, re.M)
    latency = re.search(r"^latency average = ([\d.]+) ms", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if returncode != 0 or tps is None or latency is None:
        raise RuntimeError(f"pgbench failed ({returncode}):\n{out}\n{err}")
    return {"trades_per_s": round(float(tps.group(1)), 1),
            "latency_avg_ms": float(latency.group(1)),
            "failed": int(failed.group(1)) if failed else 0}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.engine import funded_runs
    from core.store import open_store
    from tests.servers import start_postgres

    pg = start_postgres()
    try:
        store = open_store(pg.url())
        store.migrate()
        run_ids = funded_runs(store, CLIENTS)
        store.close()
        result = sql_ceiling(pg.url(), run_ids)
        emit({"bench": "trade_floor", **result, "cpus": os.cpu_count(),
              "shared_cores": "pgbench (one thread) and PostgreSQL on these cores"})
    finally:
        pg.stop()
    return 0
