"""Follow a run's Server-Sent Events with a progress bar (api.cli.stream reads them)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.client import ApiClient, ApiError
from api.cli.stream import run_events


def follow(client: ApiClient, run_id: int, console: Console, *, quiet: bool = False
           ) -> dict[str, Any]:
    """Show progress until the run's final event; returns that event's data."""
    run = client.get(f"/v1/runs/{run_id}")
    columns = (TextColumn("[bold]run {task.fields[run_id]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("equity {task.fields[equity]}"), TextColumn("{task.fields[last]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("run", total=run["progress"]["total"], run_id=run_id,
                            equity=run["progress"].get("equity") or "-", last=run["status"])
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
    elif kind == "decision":
        bar.update(task, last=f"{data.get('action', '')} ({data.get('outcome', '')})")
    elif kind == "status":
        bar.update(task, last=str(data.get("status")))
