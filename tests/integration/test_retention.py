"""Retention on both stores: an old final run is archived (JSONL, money exact) and gone
from every table; a run that is not final, or finished recently, is never touched; a
crash between the archive and the delete leaves the run, and the next prune completes."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest

from core.errors import NotFound
from core.eventlog import EventLog, EventType
from core.records import Decision, Order, Run, Side
from core.retention import archive_path, prune
from core.status import RunStatus
from core.store import Store
from core.store.sql import SqlStore
from runner.trading import TradingService
from tests.factories import make_run, run_status

T0 = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)
NOW = dt.datetime.now(dt.UTC)
CUTOFF = NOW - dt.timedelta(days=90)
LONG_AGO = NOW - dt.timedelta(days=400)
TABLES = ("decisions", "orders", "order_events", "trades", "positions", "portfolios")


def age(store: Store, run_id: int, finished_at: dt.datetime | None) -> None:
    """Set a run's finished_at as if it had ended then."""
    sql = cast(SqlStore, store)
    with sql._tx(write=True) as cur:
        cur.run("UPDATE runs SET finished_at = %s WHERE id = %s",
                (sql.dialect.time(finished_at), run_id))


def rows_of(store: Store, run_id: int) -> dict[str, int]:
    sql = cast(SqlStore, store)
    counts = {}
    with sql._tx() as cur:
        for table in TABLES:
            row = cur.one(f"SELECT COUNT(*) AS n FROM {table} WHERE run_id = %s", (run_id,))
            assert row is not None
            counts[table] = int(row["n"])
        row = cur.one("SELECT COUNT(*) AS n FROM runs WHERE id = %s", (run_id,))
        assert row is not None
        counts["runs"] = int(row["n"])
    return counts


def played(store: Store, final: RunStatus | None = RunStatus.COMPLETED,
           finished_at: dt.datetime | None = LONG_AGO) -> Run:
    """A run with three decisions and trades (one refused), ended as `final` (None:
    still running) and aged to `finished_at`."""
    run = make_run(store, cash=Decimal("1000.0001"))
    run_status(store).start_attempt(run.id, decider="sma")
    trading = TradingService(store, fee_per_trade=Decimal("0.015"))
    for step in range(3):
        store.record_decision(Decision(
            run_id=run.id, step=step, bar_time=T0 + dt.timedelta(minutes=step), action="buy",
            orders=[Order(Side.BUY, "AAPL", Decimal("1.5"))], reasoning=f"step {step}",
            outcome="traded", latency_ms=12.5, tokens_in=100, tokens_out=20,
            cost=Decimal("0.00012345"), tool_calls=[{"name": "buy"}]))
        trading.execute(run.id, step, 0, Order(Side.BUY, "AAPL", Decimal("1.5")),
                        price=Decimal("33.333333") + step, bar_time=T0 + dt.timedelta(minutes=step))
        store.complete_step(run.id, step, equity=Decimal("1000.0001"),
                            cash=store.get_portfolio(run.id).cash)
    trading.execute(run.id, 2, 1, Order(Side.SELL, "MSFT", Decimal("1")),  # refused
                    price=Decimal("400.1"), bar_time=T0)
    if final is None:
        return store.get_run(run.id)
    if final is RunStatus.STOPPING:
        return run_status(store).transition(run.id, RunStatus.STOPPING)
    run_status(store).transition(run.id, final, reason="ended", result={"pnl": "1.23", "steps": 3})
    age(store, run.id, finished_at)
    return store.get_run(run.id)


def read_archive(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_old_final_run_is_archived_and_gone_and_the_others_untouched(
        store: Store, tmp_path: Path) -> None:
    old = played(store)
    trades = store.list_trades(old.id)
    decisions = store.list_decisions(old.id)
    positions = store.list_positions(old.id)
    portfolio = store.get_portfolio(old.id)
    assert len(trades) == 4 and len(decisions) == 3 and len(positions) == 3

    running = played(store, final=None)
    age(store, running.id, LONG_AGO)  # even with a finished_at, not final: kept
    stopping = played(store, final=RunStatus.STOPPING)
    age(store, stopping.id, LONG_AGO)
    recent = played(store, finished_at=NOW - dt.timedelta(days=10))
    failed_no_time = played(store, final=RunStatus.FAILED, finished_at=None)
    queued = make_run(store, admit=False)
    kept = {r.id: rows_of(store, r.id)
            for r in (running, stopping, recent, failed_no_time, queued)}

    report = prune(store, CUTOFF, tmp_path / "archive")

    assert report.runs == [old.id] and report.deleted == 1 and report.archived == 1
    # The run, its portfolio, 3 decisions, 4 orders (one per trade) with 2 events each
    # (placed, then filled or refused), 4 trades, 3 positions.
    assert report.rows == 1 + 1 + 3 + 4 + 8 + 4 + 3 and not report.skipped
    assert rows_of(store, old.id) == dict.fromkeys((*TABLES, "runs"), 0)
    with pytest.raises(NotFound):
        store.get_run(old.id)
    for run_id, counts in kept.items():
        assert rows_of(store, run_id) == counts
    assert store.get_run(running.id).status is RunStatus.RUNNING
    assert store.get_run(stopping.id).status is RunStatus.STOPPING

    path = tmp_path / "archive" / LONG_AGO.strftime("%Y-%m") / f"run-{old.id}.jsonl"
    assert path == archive_path(tmp_path / "archive", old) and path.is_file()
    assert report.bytes == path.stat().st_size
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file
    lines = read_archive(path)
    assert [x["kind"] for x in lines] == (["run", "portfolio"] + ["decision"] * 3
                                          + ["order"] * 4 + ["order_event"] * 8
                                          + ["trade"] * 4 + ["position"] * 3)
    orders = [x for x in lines if x["kind"] == "order"]
    assert [(o["id"], o["state"]) for o in orders] == [
        (t.order_id, t.status.value) for t in trades]
    assert [e["event"] for e in lines if e["kind"] == "order_event"] == [
        "placed", "filled"] * 3 + ["placed", "refused"]
    lines = [x for x in lines if x["kind"] not in ("order", "order_event")]
    run_line = lines[0]
    assert run_line["id"] == old.id and run_line["status"] == "completed"
    assert run_line["spec"]["symbols"] == ["AAPL"]
    assert run_line["spec"]["initial_cash"] == "1000.0001"
    assert run_line["result"] == {"pnl": "1.23", "steps": 3}
    assert dt.datetime.fromisoformat(run_line["finished_at"]) == old.finished_at
    assert lines[1]["cash"] == str(portfolio.cash)
    assert lines[1]["holdings"] == {"AAPL": str(portfolio.holdings["AAPL"])}
    for line, d in zip(lines[2:5], decisions, strict=True):
        assert line["step"] == d.step and line["cost"] == "0.00012345" == str(d.cost)
        assert line["orders"][0]["quantity"] == "1.5" and line["reasoning"] == d.reasoning
        assert line["tool_calls"] == [{"name": "buy"}]
    for line, t in zip(lines[5:9], trades, strict=True):
        assert (line["id"], line["step"], line["seq"], line["status"]) == (
            t.id, t.step, t.seq, t.status.value)
        assert Decimal(line["price"]) == t.price and line["price"] == str(t.price)
        assert line["cash_after"] == str(t.cash_after) and line["fees"] == str(t.fees)
    assert [x["price"] for x in lines[5:8]] == [str(t.price) for t in trades[:3]]
    assert Decimal(lines[5]["price"]) == Decimal("33.333333")
    for line, p in zip(lines[9:], positions, strict=True):
        assert line["cash"] == str(p.cash) and line["holdings"]["AAPL"] == str(
            p.holdings["AAPL"])

    again = prune(store, CUTOFF, tmp_path / "archive")
    assert again.runs == [] and again.deleted == 0


def test_a_dry_run_changes_nothing(store: Store, tmp_path: Path) -> None:
    old = [played(store, finished_at=LONG_AGO + dt.timedelta(days=i)) for i in (2, 0, 1)]
    before = {r.id: rows_of(store, r.id) for r in old}
    report = prune(store, CUTOFF, tmp_path / "archive", dry_run=True, batch_size=2)
    assert report.runs == [old[1].id, old[2].id, old[0].id]  # oldest first, across pages
    assert report.deleted == report.archived == 0
    assert {r.id: rows_of(store, r.id) for r in old} == before
    assert not (tmp_path / "archive").exists()


def test_batches_prune_every_old_run_oldest_first(store: Store, tmp_path: Path) -> None:
    old = [played(store, final=status, finished_at=LONG_AGO + dt.timedelta(hours=i))
           for i, status in enumerate([RunStatus.STOPPED, RunStatus.FAILED,
                                       RunStatus.COMPLETED, RunStatus.COMPLETED,
                                       RunStatus.STOPPED])]
    report = prune(store, CUTOFF, tmp_path, batch_size=2)
    assert report.runs == [r.id for r in old] and report.archived == 5
    assert len(list(tmp_path.rglob("run-*.jsonl"))) == 5


def test_without_an_archive_dir_the_run_is_deleted_and_nothing_written(
        store: Store, tmp_path: Path) -> None:
    old = played(store)
    report = prune(store, CUTOFF, None)
    assert report.runs == [old.id] and report.archived == 0 and report.bytes == 0
    assert rows_of(store, old.id)["runs"] == 0


def test_a_crash_between_archive_and_delete_leaves_the_run_and_the_next_prune_completes(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = played(store)
    before = rows_of(store, old.id)

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("killed between the archive and the delete")

    monkeypatch.setattr(store, "delete_finished_run", crash)
    with pytest.raises(RuntimeError):
        prune(store, CUTOFF, tmp_path)
    path = archive_path(tmp_path, old)
    assert path.is_file() and rows_of(store, old.id) == before  # archived, not deleted
    monkeypatch.undo()

    report = prune(store, CUTOFF, tmp_path)
    assert report.runs == [old.id] and rows_of(store, old.id)["runs"] == 0
    assert len(read_archive(path)) == 2 + 3 + 4 + 8 + 4 + 3  # written again, whole


def test_a_failed_archive_deletes_nothing(store: Store, tmp_path: Path) -> None:
    old = played(store)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(OSError):
        prune(store, CUTOFF, blocker)
    assert rows_of(store, old.id)["runs"] == 1


def test_the_delete_checks_again_inside_its_transaction(store: Store) -> None:
    old = played(store)
    running = played(store, final=None)
    age(store, running.id, LONG_AGO)
    assert not store.delete_finished_run(running.id, finished_before=CUTOFF)
    assert not store.delete_finished_run(old.id, finished_before=LONG_AGO)  # not that old
    # A trade the archive does not hold: refused, the run stays.
    assert not store.delete_finished_run(old.id, finished_before=CUTOFF,
                                         expect_rows={"trades": 3})
    assert rows_of(store, old.id)["trades"] == 4
    with pytest.raises(ValueError):
        store.delete_finished_run(old.id, finished_before=CUTOFF, expect_rows={"runs": 1})
    assert store.delete_finished_run(old.id, finished_before=CUTOFF,
                                     expect_rows={"trades": 4, "decisions": 3,
                                                  "positions": 3})
    assert rows_of(store, old.id)["runs"] == 0
    assert not store.delete_finished_run(old.id, finished_before=CUTOFF)  # gone already


def test_the_run_events_go_with_it(store: Store, event_log: EventLog, tmp_path: Path) -> None:
    old = played(store)
    kept = played(store, finished_at=NOW)
    for run in (old, kept):
        event_log.append(run.id, EventType.STATUS, {"status": "completed"})
        event_log.finish(run.id)
    report = prune(store, CUTOFF, tmp_path, events=event_log)
    assert report.streams_deleted == 1
    assert event_log.read(old.id) == [] and len(event_log.read(kept.id)) == 1
