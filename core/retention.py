"""Retention: archive the runs that ended long ago, then delete them.

Only final runs (completed, failed, stopped) whose finished_at is older than the cut-off
are pruned; a run that is not final is never touched, however old. Each run is written
to one JSONL file (`<archive_dir>/<YYYY-MM of finished_at>/run-<id>.jsonl`): the run
record first (its spec and result included), then its portfolio, decisions, orders,
their state changes, trades and positions, one `{"kind": ..., ...}` object a line,
money and quantities as exact decimal strings. The file is written under a temporary
name, fsynced and renamed before the run is deleted, and the delete (one transaction)
checks again that the run is final and old and that it holds exactly the rows
archived: a crash between the two leaves the run in place, and the next prune archives
it again and completes.

A finished run's Redis stream expires by itself after `event_stream_ttl_seconds`; when
an event log is given, pruning deletes the run's stream (or SQLite events) at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.eventlog.base import EventLog
from core.records import Run
from core.store.base import Store

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "tickrun.run-archive/1"
# Positions are written one per filled trade; a run has at most as many as trades.
_POSITIONS_MARGIN = 1000


@dataclass(slots=True)
class PruneReport:
    older_than: dt.datetime
    dry_run: bool
    archive_dir: str | None
    runs: list[int] = field(default_factory=list)  # pruned (or, dry run, to prune)
    archived: int = 0
    deleted: int = 0
    rows: int = 0  # of the runs deleted: run, portfolio and every ledger row
    bytes: int = 0  # archive bytes written
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"run_id", "reason"}
    streams_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"older_than": self.older_than.isoformat(), "dry_run": self.dry_run,
                "archive_dir": self.archive_dir, "runs": list(self.runs),
                "archived": self.archived, "deleted": self.deleted, "rows": self.rows,
                "bytes": self.bytes, "skipped": list(self.skipped),
                "streams_deleted": self.streams_deleted}


def prune(store: Store, older_than: dt.datetime, archive_dir: Path | None, *,
          batch_size: int = 100, dry_run: bool = False,
          events: EventLog | None = None) -> PruneReport:
    """Archive (unless `archive_dir` is None: the caller chose no archive) and delete
    every final run that finished before `older_than`, oldest first, `batch_size` runs
    a read. A dry run only lists them."""
    if older_than.tzinfo is None:
        raise ValueError("older_than must be timezone-aware")
    report = PruneReport(older_than=older_than, dry_run=dry_run,
                         archive_dir=None if archive_dir is None else str(archive_dir))
    after: tuple[dt.datetime, int] | None = None
    while batch := store.prunable_runs(older_than, after=after, limit=batch_size):
        last = batch[-1]
        assert last.finished_at is not None
        after = (last.finished_at, last.id)
        for run in batch:
            if dry_run:
                report.runs.append(run.id)
                continue
            _prune_one(store, run, older_than, archive_dir, events, report)
    return report


def _prune_one(store: Store, run: Run, older_than: dt.datetime, archive_dir: Path | None,
               events: EventLog | None, report: PruneReport) -> None:
    lines, counts = archive_lines(store, run)
    if archive_dir is not None:
        report.bytes += write_archive(archive_path(archive_dir, run), lines)
        report.archived += 1
    if not store.delete_finished_run(run.id, finished_before=older_than, expect_rows=counts):
        report.skipped.append({"run_id": run.id,
                               "reason": "changed while it was archived; left for the "
                                         "next prune"})
        return
    report.deleted += 1
    report.runs.append(run.id)
    report.rows += 2 + sum(counts.values())  # the run and its portfolio
    if events is not None:
        try:
            events.delete(run.id)
            report.streams_deleted += 1
        except Exception as exc:  # the stream expires by its TTL anyway
            log.warning("run %d: event stream not deleted (%s); it expires by its TTL",
                        run.id, exc)


def archive_path(archive_dir: Path, run: Run) -> Path:
    assert run.finished_at is not None
    month = run.finished_at.astimezone(dt.UTC).strftime("%Y-%m")
    return archive_dir / month / f"run-{run.id}.jsonl"


def archive_lines(store: Store, run: Run) -> tuple[list[str], dict[str, int]]:
    """The run's archive, one JSON line each, and the rows of each ledger table in it."""
    lines = [_line("run", run, archive_format=ARCHIVE_FORMAT)]
    lines.append(_line("portfolio", store.get_portfolio(run.id)))
    counts = {"decisions": 0, "orders": 0, "order_events": 0, "trades": 0, "positions": 0}
    for decision in store.iter_decisions(run.id):
        lines.append(_line("decision", decision))
        counts["decisions"] += 1
    for kind, table, page in (("order", "orders", store.list_orders),
                              ("order_event", "order_events", store.list_order_events)):
        after_id = 0
        while batch := page(run.id, after_id=after_id, limit=1000):
            lines += [_line(kind, record) for record in batch]
            counts[table] += len(batch)
            after_id = batch[-1].id
    for trade in store.iter_trades(run.id):
        lines.append(_line("trade", trade))
        counts["trades"] += 1
    # More than the trades would be a ledger that broke its rule; the delete's count
    # check then refuses, and the run stays.
    for position in store.list_positions(run.id, limit=counts["trades"] + _POSITIONS_MARGIN):
        lines.append(_line("position", position))
        counts["positions"] += 1
    return lines, counts


def write_archive(path: Path, lines: list[str]) -> int:
    """Write the file whole or not at all: a temporary file, fsynced, renamed, and the
    directory fsynced, so that the rename survives a crash before the delete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode()
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(data)


def _line(kind: str, record: Any, **extra: Any) -> str:
    # `kind` names the line; a record's own `kind` (an order event's: placed, filled...)
    # is written as `event`.
    fields = {("event" if k == "kind" else k): v for k, v in _fields(record).items()}
    body = {"kind": kind, **extra, **fields}
    return json.dumps(body, default=_plain, separators=(",", ":"), ensure_ascii=False)


def _fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def _plain(value: Any) -> Any:
    """JSON for what the records hold: money exact, times ISO 8601 with their offset."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_json = getattr(value, "to_json", None)
        return to_json() if callable(to_json) else _fields(value)
    raise TypeError(f"cannot archive a {type(value).__name__}")
