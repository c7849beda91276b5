"""The ceilings the benchmarks report beside their rates stay true to what they stand for:
the trade floor's pgbench script writes a trade as the ledger does, on today's schema,
and the reading bare app makes the API route's reads (a missing run fails it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal

import httpx
import psycopg
import pytest
import redis

from bench.engine import funded_runs
from bench.trade_floor import sql_ceiling
from core.eventlog.redis_log import RedisEventLog
from core.store import Store, open_store


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    store = open_store(postgres_url, pool_size=2)
    yield store
    store.close()


def test_trade_floor_writes_what_a_trade_writes(postgres_url: str, pg_store: Store) -> None:
    run_ids = funded_runs(pg_store, 2)
    result = sql_ceiling(postgres_url, run_ids, seconds=1)
    assert result["failed"] == 0 and result["trades_per_s"] > 0
    with psycopg.connect(postgres_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM trades WHERE run_id = ANY(%(r)s)),"
            " (SELECT count(*) FROM orders WHERE run_id = ANY(%(r)s) AND state = 'filled'),"
            " (SELECT count(*) FROM order_events WHERE run_id = ANY(%(r)s)),"
            " (SELECT count(*) FROM positions WHERE run_id = ANY(%(r)s)),"
            " (SELECT count(DISTINCT t.run_id) FROM trades t JOIN orders o"
            "  ON o.id = t.order_id AND o.run_id = t.run_id WHERE t.run_id = ANY(%(r)s))",
            {"r": run_ids}).fetchone()
    assert counts is not None
    trades, orders, events, positions, runs_traded = counts
    assert trades > 10 and orders == trades and positions == trades and events == 2 * trades
    assert runs_traded == 2  # each client on its run, each trade on its own order
    # The ledger reads what pgbench wrote like any trade: a filled buy at its price.
    trade = pg_store.list_trades(run_ids[0], limit=1)[0]
    assert trade.filled and trade.price == Decimal("101.25")


def test_sql_ceiling_wants_consecutive_runs(postgres_url: str) -> None:
    with pytest.raises(ValueError, match="consecutive"):
        sql_ceiling(postgres_url, [1, 3], seconds=1)


def test_reading_bare_app_reads_the_run_and_its_progress(
        postgres_url: str, pg_store: Store, redis_url: str, redis_prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = funded_runs(pg_store, 1)[0]
    RedisEventLog(redis_url, prefix=redis_prefix).set_progress(run_id, {"step": 7})
    for name, value in {"TICKRUN_DATABASE_URL": postgres_url, "TICKRUN_REDIS_URL": redis_url,
                        "TICKRUN_REDIS_KEY_PREFIX": redis_prefix, "TICKRUN_BENCH_READS": "1",
                        "TICKRUN_BENCH_USER": "bench",
                        "TICKRUN_BENCH_RUN_DOC": json.dumps({"id": run_id}),
                        "TICKRUN_BENCH_RUN_PAGE": json.dumps({"items": []})}.items():
        monkeypatch.setenv(name, value)
    from bench.bare_app import create_app

    app = create_app()

    async def answers() -> list[httpx.Response]:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                base_url="http://bench") as client:
            return [await client.get(path) for path in
                    (f"/v1/runs/{run_id}", "/v1/runs?limit=50", f"/v1/runs/{run_id + 1000}")]

    before = _progress_reads(redis_url)
    found, page, missing = asyncio.run(answers())
    assert found.status_code == 200 and found.json() == {"id": run_id}
    assert page.status_code == 200 and page.json() == {"items": []}
    assert missing.status_code == 500  # it did read the store: no such run
    # The run's progress was read (a first call may meet NOSCRIPT and be sent again).
    assert _progress_reads(redis_url) > before


def _progress_reads(redis_url: str) -> int:
    """How many progress reads (READ_PROGRESS, a script) Redis has answered."""
    stats = redis.Redis.from_url(redis_url).info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha",
                                                                   "cmdstat_eval"))
