"""Follow a run's Server-Sent Events with a progress bar (api.cli.stream reads them)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.client import ApiClient, ApiError
from api.cli.stream import run_events

NEW_YORK = ZoneInfo("America/New_York")


def follow(client: ApiClient, run_id: int, console: Console, *, quiet: bool = False
           ) -> dict[str, Any]:
    """Show progress until the run's final event; returns that event's data."""
    run = client.get(f"/v1/runs/{run_id}")
    columns = (TextColumn("[bold]run {task.fields[run_id]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("equity {task.fields[equity]}"), TextColumn("{task.fields[last]}"),
               TextColumn("{task.fields[clock]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("run", total=run["progress"]["total"], run_id=run_id,
                            equity=run["progress"].get("equity") or "-", last=run["status"],
                            clock="")
        return _stream(client, run_id, bar, task)


def _stream(client: ApiClient, run_id: int, bar: Progress, task: Any) -> dict[str, Any]:
    for event in run_events(client, run_id):
        _show(bar, task, event.type, event.data)
        if event.type == "result":
            return event.data
    raise ApiError(0, f"the event stream of run {run_id} ended without its result")


def _show(bar: Progress, task: Any, kind: str, data: dict[str, Any]) -> None:
    if kind == "progress":
        bar.update(task, completed=data["step"], total=data["total"],
                   equity=f"{float(data['equity']):,.2f}")
        if "lag_seconds" in data:  # a live run: the bar's time and how late it was done
            bar.update(task, clock=live_clock(data))
    elif kind == "decision":
        bar.update(task, last=f"{data.get('action', '')} ({data.get('outcome', '')})")
    elif kind == "status":
        bar.update(task, last=str(data.get("status")))


def live_clock(progress: dict[str, Any]) -> str:
    """A live run's clock: the bar decided (New York time) and its lag."""
    bar_time = dt.datetime.fromisoformat(progress["bar_time"]).astimezone(NEW_YORK)
    return f"bar {bar_time:%H:%M} ET, lag {float(progress['lag_seconds']):.1f}s"
