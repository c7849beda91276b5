"""`tickrun batches`: the runs of a matrix (models x symbols x dates or ranges) made in one
request, followed and stopped as one, and compared side by side."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.cli.client import ApiClient
from api.cli.leaderboard import print_compare
from api.cli.output import JsonOpt, err, out, print_json
from core.spec import DataSource

app = typer.Typer(help="Batches: a matrix of runs made, followed, stopped and compared "
                       "as one.", no_args_is_help=True)

POLL_SECONDS = 1.0
# The columns of `compare --csv` (one row a run), in the order of its header row.
COLUMNS = ("rank", "run_id", "model", "symbol", "session", "status", "return_pct",
           "benchmark_return_pct", "excess_return_pct", "max_drawdown_pct", "sharpe",
           "trades", "win_rate", "tokens_in", "tokens_out", "cost", "lookahead", "player",
           "baseline", "repeat", "seed", "counted", "contaminated")


@app.command("create")
def create(
    models: Annotated[list[int], typer.Option("--model", help="Model id; repeat for more")],
    symbols: Annotated[list[str], typer.Option("--symbol", help="Ticker; repeat for more "
                                                                "(one symbol a run)")],
    dates: Annotated[list[str] | None, typer.Option(
        "--date", help="Intraday: a session date; repeat for more", show_default=False)] = None,
    starts: Annotated[list[str] | None, typer.Option(
        "--start", help="Daily: a range's first date; repeat with --end for more ranges",
        show_default=False)] = None,
    ends: Annotated[list[str] | None, typer.Option(
        "--end", help="Daily: a range's last date (paired with the --start in order)",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="A name to find it by")] = None,
    cash: Annotated[str, typer.Option(help="Initial cash of each run")] = "100000",
    decider: Annotated[str | None, typer.Option(
        help="llm, sma_crossover, buy_and_hold, random")] = None,
    data_source: Annotated[DataSource | None, typer.Option(
        "--data", help="Where bars come from (synthetic: seeded random bars, not market "
                       "data)", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        help="The seed (synthetic bars, random decider, the LLM's sampling); repeat k "
             "has seed + k")] = None,
    repeats: Annotated[int | None, typer.Option(
        help="Runs of each cell, each with its own seed (the API's default: 1)",
        show_default=False)] = None,
    baselines: Annotated[bool, typer.Option(
        "--baselines/--no-baselines", help="Also play buy_and_hold, sma_crossover and "
                                           "random once per symbol and date or range")
        ] = True,
    max_cost_usd: Annotated[str | None, typer.Option(
        "--max-cost-usd", help="LLM budget of each run in dollars", show_default=False)
        ] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", help="LLM token budget of each run", show_default=False)] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    follow_batch: Annotated[bool, typer.Option(
        "--follow", help="Follow it to the end, then compare its runs")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue every run of the matrix: intraday with --date, daily with --start/--end."""
    starts, ends = starts or [], ends or []
    if bool(dates) == bool(starts or ends) or len(starts) != len(ends):
        err.print("give --date (intraday), or as many --start as --end (daily)")
        raise typer.Exit(2)
    body: dict[str, Any] = {"model_ids": models, "symbols": [s.upper() for s in symbols],
                            "initial_cash": cash}
    if dates:
        body["dates"] = dates
    else:
        body["ranges"] = [{"start": s, "end": e} for s, e in zip(starts, ends, strict=True)]
    body.update({k: v for k, v in (("name", name), ("decider", decider),
                                   ("data", data_source), ("seed", seed),
                                   ("repeats", repeats),
                                   ("max_cost_usd", max_cost_usd), ("max_tokens", max_tokens))
                 if v is not None})
    if not baselines:
        body["baselines"] = False
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with ApiClient() as client:
        batch = client.post("/v1/batches", body, headers=headers)
        if not as_json:
            err.print(f"batch {batch['id']}: {batch['runs']} runs queued")
        if follow_batch:
            batch = follow(client, batch["id"], quiet=as_json)
            if not as_json:
                print_compare(client.get(f"/v1/batches/{batch['id']}/compare"))
    if as_json:
        print_json(batch)
    elif not follow_batch:
        out.print(f"batch {batch['id']} {_counts(batch)}", highlight=False)


def follow(client: ApiClient, batch_id: int, *, quiet: bool = False) -> dict[str, Any]:
    """A progress bar of the whole batch until every run is final; returns the batch."""
    columns = (TextColumn(f"[bold]batch {batch_id}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=quiet) as bar:
        task = bar.add_task("batch", total=None, counts="")
        while True:
            batch: dict[str, Any] = client.get(f"/v1/batches/{batch_id}")
            bar.update(task, completed=batch["progress"]["steps_done"],
                       total=batch["progress"]["steps_total"], counts=_counts(batch))
            if batch["finished"]:
                return batch
            time.sleep(POLL_SECONDS)


def _counts(batch: dict[str, Any]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(batch["counts"].items()))


@app.command("ls")
def ls(limit: int = 20, as_json: JsonOpt = False) -> None:
    """Your batches, newest first."""
    with ApiClient() as client:
        page = client.get("/v1/batches", limit=limit)
    if as_json:
        print_json(page)
        return
    table = Table("id", "name", "runs", "status", "steps", "created", box=None)
    for b in page["items"]:
        table.add_row(str(b["id"]), b["name"] or "-", str(b["runs"]), _counts(b),
                      f"{b['progress']['steps_done']}/{b['progress']['steps_total']}",
                      b["created_at"][:19])
    out.print(table)


@app.command("get")
def get(batch_id: int, as_json: JsonOpt = False) -> None:
    """A batch: its runs by status and the progress of them all."""
    with ApiClient() as client:
        batch = client.get(f"/v1/batches/{batch_id}")
    if as_json:
        print_json(batch)
        return
    out.print(f"batch {batch['id']}" + (f" ({batch['name']})" if batch["name"] else "")
              + f": {batch['runs']} runs, {_counts(batch)}; steps "
              f"{batch['progress']['steps_done']}/{batch['progress']['steps_total']}",
              highlight=False)
    out.print(f"runs: {' '.join(str(r) for r in batch['run_ids'])}", highlight=False)


@app.command("stop")
def stop(batch_id: int, as_json: JsonOpt = False) -> None:
    """Stop every queued or active run of the batch (partial results are kept)."""
    with ApiClient() as client:
        answer = client.post(f"/v1/batches/{batch_id}/stop")
    if as_json:
        print_json(answer)
    else:
        out.print(f"stopping {len(answer['stopping'])} runs: {answer['stopping']}",
                  highlight=False)


@app.command("compare")
def compare(batch_id: int,
            csv_file: Annotated[Path | None, typer.Option(
                "--csv", help="Also write the runs to this CSV file (with a header row)",
                show_default=False)] = None,
            metric: Annotated[str, typer.Option(
                help="Rank the players by this metric (return_pct, sharpe, sortino, "
                     "max_drawdown_pct...)")] = "return_pct",
            versus: Annotated[str | None, typer.Option(
                help="The player every difference is against (default: the leader)",
                show_default=False)] = None,
            runs: Annotated[bool, typer.Option("--runs", help="Also print every run")] = False,
            as_json: JsonOpt = False) -> None:
    """The batch's players side by side (models and baselines), each figure a mean over
    the repeats and sessions with its 95% bootstrap interval, against random and
    buy-and-hold on the same sessions; then each session's repeats."""
    with ApiClient() as client:
        report = client.get(f"/v1/batches/{batch_id}/compare", metric=metric, versus=versus)
    if csv_file is not None:
        with csv_file.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for row in report["rows"]:
                writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
        if not as_json:
            err.print(f"{len(report['rows'])} rows written to {csv_file}")
    if as_json:
        print_json(report)
    else:
        print_compare(report, runs=runs)
