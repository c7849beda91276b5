"""`tickrun leaderboard`: your players (models and baselines) over your batches, ranked by
a metric's mean with its interval; and the tables `tickrun batches compare` prints. A
figure reads `mean ± h`, h half the width of its 95% bootstrap interval, with n the runs
it is of; marks are short symbols explained by the legend line under each table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import ApiClient
from api.cli.output import JsonOpt, out, print_json

LEGEND = ("marks: >R <R above or below random, >H <H above or below buy-and-hold (the "
          "95% interval of the difference in return excludes 0); C runs whose session is in "
          "the model's training data; L look-ahead violations; L? look-ahead possible "
          "(an outside tool that is not point-in-time)")
LABELS = {"return_pct": "return %", "excess_return_pct": "excess %", "sharpe": "Sharpe",
          "max_drawdown_pct": "max dd %", "sortino": "Sortino", "calmar": "Calmar",
          "volatility_pct": "volatility %", "win_rate": "win rate"}
Figure = Mapping[str, Any] | None


def num(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:,.2f}"


def pm(stat: Figure) -> str:
    """`mean ± h` (h: half the interval's width), the mean alone without an interval."""
    if not stat or stat.get("mean") is None:
        return "-"
    low, high = stat.get("ci_low"), stat.get("ci_high")
    if low is None or high is None:
        return num(stat["mean"])
    return f"{num(stat['mean'])} ± {num((high - low) / 2)}"


def versus(diff: Figure) -> str:
    """A difference as `mean ± h`, starred when its interval excludes zero."""
    if not diff or diff.get("difference") is None:
        return "-"
    text = pm({"mean": diff["difference"], "ci_low": diff["ci_low"],
               "ci_high": diff["ci_high"]})
    return ("+" if diff["difference"] > 0 else "") + text + (
        " *" if diff.get("excludes_zero") else "")


def marks(entry: Mapping[str, Any]) -> str:
    found = []
    for key, letter in (("beats_random", "R"), ("beats_buy_and_hold", "H")):
        diff = entry.get(key) or {}
        if diff.get("excludes_zero"):
            found.append((">" if diff.get("better") else "<") + letter)
    if entry.get("contaminated_runs"):
        found.append("C")
    if entry.get("lookahead_violation_runs"):
        found.append("L")
    if entry.get("lookahead_possible_runs"):
        found.append("L?")
    return " ".join(found) or "-"


def print_compare(report: Mapping[str, Any], *, runs: bool = False) -> None:
    """The players (ranked), then each player's cells, then the legend; the runs too
    when asked."""
    name = f"batch {report['batch_id']}" + (f" ({report['name']})" if report["name"] else "")
    metric = report["metric"]
    figures = list(dict.fromkeys(["return_pct", "excess_return_pct", metric, "sharpe",
                                  "max_drawdown_pct"]))
    lead = report.get("versus")
    players = Table("#", "player", "runs", "sessions", *(LABELS.get(f, f) for f in figures),
                    "vs random", "vs b&h", *([f"vs {lead}"] if lead else []), "cost $",
                    "marks", box=None,
                    title=f"{name}: by player, ranked by {LABELS.get(metric, metric)} "
                          f"(mean ± half its 95% interval)")
    diffs = {d["player"]: d for d in report.get("differences", [])}
    for p in report["players"]:
        players.add_row(
            str(p["rank"]), p["player"] + (" (baseline)" if p["baseline"] else ""),
            f"{p['with_result']}/{p['runs']}", str(p["sessions"]),
            *(pm(p["stats"].get(f)) for f in figures), versus(p["beats_random"]),
            versus(p["beats_buy_and_hold"]),
            *([versus(diffs.get(p["player"])) if p["player"] != lead else "-"]
              if lead else []),
            num(float(p["total_cost"])), marks(p))
    out.print(players)
    cells = Table("player", "symbol", "session", "n", "return %", "Sharpe", "max dd %",
                  "vs random", "vs b&h", "marks", box=None,
                  title="by session (over its repeats)")
    for c in report["cells"]:
        cells.add_row(c["player"], c["symbol"], c["session"], f"{c['with_result']}/{c['runs']}",
                      *(pm(c["stats"].get(f)) for f in ("return_pct", "sharpe",
                                                          "max_drawdown_pct")),
                      versus(c["beats_random"]), versus(c["beats_buy_and_hold"]), marks(c))
    out.print(cells)
    if runs:
        print_runs(report)
    out.print(f"n: completed runs of all runs; * the 95% interval excludes 0. {LEGEND}. "
              f"Intervals: {report['method']}.", highlight=False)


def print_runs(report: Mapping[str, Any]) -> None:
    table = Table("#", "run", "player", "repeat", "symbol", "session", "status", "return %",
                  "b&h %", "excess %", "max dd %", "Sharpe", "trades", "tokens", "cost $",
                  "look-ahead", box=None, title="runs")
    for r in report["rows"]:
        table.add_row(str(r["rank"]), str(r["run_id"]), r["player"], str(r["repeat"]),
                      r["symbol"], r["session"], r["status"],
                      *(num(r[k]) for k in ("return_pct", "benchmark_return_pct",
                                            "excess_return_pct", "max_drawdown_pct",
                                            "sharpe")),
                      "-" if r["trades"] is None else str(r["trades"]),
                      f"{(r['tokens_in'] or 0) + (r['tokens_out'] or 0):,}",
                      "-" if r["cost"] is None else str(r["cost"]),
                      (r.get("lookahead") or "-") + (" C" if r.get("contaminated") else ""))
    out.print(table)


def leaderboard_command(
    metric: Annotated[str, typer.Option(
        help="return_pct, excess_return_pct, sharpe, sortino, calmar, max_drawdown_pct, "
             "volatility_pct, win_rate, profit_factor, llm_cost, return_per_llm_dollar... "
             "(the API names them all)")] = "sharpe",
    batch: Annotated[int | None, typer.Option(help="Only this batch's runs",
                                              show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Your players, models and baselines, over the runs of all your batches (or one),
    ranked by the mean of a metric with its 95% bootstrap interval, against random, and
    marked where a figure may not be fair."""
    with ApiClient() as client:
        board = client.get("/v1/leaderboard", metric=metric, batch_id=batch)
    if as_json:
        print_json(board)
        return
    label = LABELS.get(board["metric"], board["metric"])
    order = "most first" if board["higher_is_better"] else "least first"
    scope = f"batch {board['batch_id']}" if board["batch_id"] else "all your batches"
    table = Table("#", "player", label, "95% interval", "n", "sessions", "batches",
                  "vs random", "marks", box=None,
                  title=f"leaderboard: mean {label} ({order}), {scope}")
    for e in board["entries"]:
        value = e["value"]
        interval = ("-" if value["ci_low"] is None
                    else f"[{num(value['ci_low'])}, {num(value['ci_high'])}]")
        table.add_row(str(e["rank"]), e["player"] + (" (baseline)" if e["baseline"] else ""),
                      pm(value), interval, f"{e['with_result']}/{e['runs']}",
                      str(e["sessions"]), " ".join(str(b) for b in e["batches"]),
                      versus(e["beats_random"]), marks(e))
    out.print(table)
    out.print(f"n: completed runs of all runs; * the 95% interval excludes 0. {LEGEND}. "
              f"Intervals: {board['method']}.", highlight=False)
