"""Follow a run's Server-Sent Events with a progress bar; reconnects with Last-Event-ID."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.client import ApiClient, ApiError

RECONNECT_SECONDS = 1.0
MAX_RECONNECTS = 30


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
    last_id: str | None = None
    for _ in range(MAX_RECONNECTS):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with connect_sse(client.http, "GET", f"/v1/runs/{run_id}/events", headers=headers,
                             timeout=httpx.Timeout(30.0, read=60.0)) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise ApiError(source.response.status_code, source.response.text)
                for sse in source.iter_sse():
                    if sse.id:
                        last_id = sse.id
                    data = json.loads(sse.data)["data"]
                    _show(bar, task, sse.event, data)
                    if sse.event == "result":
                        return dict(data)
        except (httpx.TransportError, SSEError):
            pass  # the server went away or restarted: resume after the last event seen
        time.sleep(RECONNECT_SECONDS)
    raise ApiError(0, f"lost the event stream of run {run_id}")


def _show(bar: Progress, task: Any, kind: str, data: dict[str, Any]) -> None:
    if kind == "progress":
        bar.update(task, completed=data["step"], total=data["total"],
                   equity=f"{float(data['equity']):,.2f}")
    elif kind == "decision":
        bar.update(task, last=f"{data.get('action', '')} ({data.get('outcome', '')})")
    elif kind == "status":
        bar.update(task, last=str(data.get("status")))
