"""`tickrun runs prune`: archive and delete the runs that ended long ago, in-process
against TICKRUN_DATABASE_URL (like `tickrun data`; no API server is involved). The
chart's retention CronJob runs this command; an operator may run it by hand."""

from __future__ import annotations

import datetime as dt
import re
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.data import fail, open_cache_store
from api.cli.output import JsonOpt, err, out, print_json

if TYPE_CHECKING:
    from core.eventlog.base import EventLog

EXIT_INPUT = 2  # the command cannot be served as asked; nothing was changed
EXIT_FAILED = 1  # the database or the archive refused; what was done is kept

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_older_than(text: str, now: dt.datetime) -> dt.datetime:
    """`90d`, `12h`, `2w` (an age) or an ISO date or time (`2025-01-31`, UTC when no
    offset is given): the cut-off, which must be in the past."""
    if m := _AGE.match(text.lower()):
        amount = int(m.group(1))
        if amount <= 0:
            raise ValueError("--older-than must be more than 0")
        return now - dt.timedelta(**{_UNIT[m.group(2)]: amount})
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--older-than {text!r} is neither an age (90d, 12h, 2w) nor an "
                         "ISO date (2025-01-31)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when > now:
        raise ValueError(f"--older-than {text} is in the future")
    return when


def prune_command(
    older_than: Annotated[str, typer.Option(
        "--older-than", help="Prune final runs that finished before this: an age "
                             "(90d, 12h, 2w) or an ISO date (2025-01-31, UTC)",
        show_default=False)],
    archive_dir: Annotated[Path | None, typer.Option(
        "--archive-dir", help="Write each run (record, decisions, trades, positions) to "
                              "DIR/YYYY-MM/run-ID.jsonl before deleting it",
        show_default=False)] = None,
    no_archive: Annotated[bool, typer.Option(
        "--no-archive", help="Delete without an archive")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be pruned; change nothing")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000,
                                            help="Runs read at a time")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Archive and delete final runs (completed, failed, stopped) that finished before
    --older-than, with their decisions, trades and positions, oldest first, in-process
    against TICKRUN_DATABASE_URL. A run that is not final is never pruned."""
    from core.errors import StoreUnavailable
    from core.retention import prune

    try:
        cutoff = parse_older_than(older_than, dt.datetime.now(dt.UTC))
    except ValueError as exc:
        raise fail(str(exc), EXIT_INPUT) from exc
    if (archive_dir is None) == (not no_archive):
        raise fail("say where the archive goes (--archive-dir DIR) or that there is none "
                   "(--no-archive)", EXIT_INPUT)
    if archive_dir is not None and archive_dir.exists() and not archive_dir.is_dir():
        raise fail(f"--archive-dir {archive_dir} is not a directory", EXIT_INPUT)
    with open_cache_store() as store:
        events = None if dry_run else _event_log()
        try:
            report = prune(store, cutoff, archive_dir, batch_size=batch_size,
                           dry_run=dry_run, events=events)
        except StoreUnavailable as exc:
            raise fail(f"the database does not answer: {exc}", EXIT_FAILED) from exc
        except OSError as exc:
            raise fail(f"the archive could not be written ({exc}); the run it was "
                       "writing was not deleted", EXIT_FAILED) from exc
        finally:
            if events is not None:
                with suppress(Exception):
                    events.close()
    if as_json:
        print_json(report.to_json())
        return
    when = cutoff.isoformat(timespec="seconds")
    if dry_run:
        ids = ", ".join(map(str, report.runs[:20])) + (" ..." if len(report.runs) > 20 else "")
        out.print(f"dry run: would prune {len(report.runs)} run(s) finished before {when}"
                  + (f": {ids}" if report.runs else ""), highlight=False)
        return
    archived = (f"{report.archived} archived ({report.bytes:,} bytes in {archive_dir}), "
                if archive_dir is not None else "not archived (--no-archive), ")
    out.print(f"pruned {report.deleted} run(s) finished before {when}: {archived}"
              f"{report.rows:,} rows deleted, {report.streams_deleted} event stream(s) "
              f"deleted, {len(report.skipped)} skipped", highlight=False)
    for skip in report.skipped:
        err.print(f"run {skip['run_id']} skipped: {skip['reason']}", highlight=False)


def _event_log() -> EventLog | None:
    """The event log, to delete a pruned run's stream at once; without one (PostgreSQL
    and no TICKRUN_REDIS_URL) the streams expire by their TTL."""
    from core.eventlog import open_event_log
    from core.settings import CoreSettings

    try:
        return open_event_log(CoreSettings())
    except Exception:
        return None
