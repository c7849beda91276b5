"""`tickrun schedules`: run templates fired by a cron rule read in New York time, on XNYS
sessions only; each fire's run is made by the controller, once."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import ApiClient
from api.cli.output import JsonOpt, err, out, print_json
from core.schedule import NEW_YORK, SessionRule
from core.spec import DataSource, Mode

app = typer.Typer(help="Schedules: a run made at every fire of a cron rule (New York time, "
                       "XNYS sessions only).", no_args_is_help=True)

# A schedule's runs in one page: years of a daily rule's fires are beyond what a table shows.
RUNS_SHOWN = 100


@app.command("create")
def create(
    model_id: Annotated[int, typer.Option("--model", help="Model id")],
    cron: Annotated[str, typer.Option(
        help="Five fields (minute hour day month weekday) read in America/New_York, e.g. "
             "'30 16 * * 1-5'; a closed day never fires")],
    mode: Annotated[Mode, typer.Option(help="What each fire's run plays")],
    symbols: Annotated[list[str], typer.Option("--symbol", help="Ticker; repeat for more")],
    session: Annotated[SessionRule | None, typer.Option(
        help="The session a fire plays: the fire's date (today) or the latest closed by "
             "the fire time (last_closed, the API's default)", show_default=False)] = None,
    sessions: Annotated[int | None, typer.Option(
        help="Daily: how many sessions each backtest spans (the API's default: 5)",
        show_default=False)] = None,
    make_up_seconds: Annotated[int | None, typer.Option(
        "--make-up-seconds", help="A fire missed while no controller led is made up this "
                                  "late at most (the API's default: 3600)",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="A name to find it by")] = None,
    cash: Annotated[str, typer.Option(help="Initial cash of each run")] = "100000",
    decider: Annotated[str | None, typer.Option(help="llm, sma_crossover, buy_and_hold, random")
                       ] = None,
    params: Annotated[list[str] | None, typer.Option(
        "--param", help="A decider option as key=value (the value read as JSON when it "
                        "parses, e.g. fast=5); repeat for more", show_default=False)] = None,
    data_source: Annotated[DataSource | None, typer.Option(
        "--data", help="Where bars come from (synthetic: seeded random bars, not market "
                       "data)", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Synthetic data seed")] = None,
    max_cost_usd: Annotated[str | None, typer.Option(
        "--max-cost-usd", help="LLM budget of each run in dollars", show_default=False)
        ] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", help="LLM token budget of each run", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a schedule; its next run is checked now, as `runs create` would check it."""
    body: dict[str, Any] = {"model_id": model_id, "cron": cron, "mode": mode,
                            "symbols": [s.upper() for s in symbols], "initial_cash": cash}
    if params:
        body["decider_params"] = _decider_params(params)
    body.update({k: v for k, v in (("name", name), ("session", session),
                                   ("sessions", sessions),
                                   ("make_up_seconds", make_up_seconds),
                                   ("decider", decider), ("data", data_source),
                                   ("seed", seed), ("max_cost_usd", max_cost_usd),
                                   ("max_tokens", max_tokens))
                 if v is not None})
    with ApiClient() as client:
        schedule = client.post("/v1/schedules", body)
    if as_json:
        print_json(schedule)
        return
    err.print(f"schedule {schedule['id']} created")
    _print_schedule(schedule)


def _decider_params(pairs: list[str]) -> dict[str, Any]:
    """key=value pairs; a value that parses as JSON (5, 0.5, true) is sent as such."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            err.print(f"--param {pair!r}: give key=value")
            raise typer.Exit(2)
        try:
            found[key] = json.loads(value)
        except ValueError:
            found[key] = value
    return found


@app.command("ls")
def ls(limit: int = 20, as_json: JsonOpt = False) -> None:
    """Your schedules, newest first, with their next fire in New York time."""
    with ApiClient() as client:
        page = client.get("/v1/schedules", limit=limit)
    if as_json:
        print_json(page)
        return
    table = Table("id", "name", "cron", "mode", "symbols", "paused", "next fire (New York)",
                  box=None)
    for s in page["items"]:
        table.add_row(str(s["id"]), s["name"] or "-", s["cron"], s["template"]["mode"],
                      ",".join(s["template"]["symbols"]), "yes" if s["paused"] else "no",
                      _new_york(s["next_fires"][0]) if s["next_fires"] else "-")
    out.print(table)


@app.command("get")
def get(schedule_id: int, as_json: JsonOpt = False) -> None:
    """A schedule: its rule, its run, its next fires and its latest fires."""
    with ApiClient() as client:
        schedule = client.get(f"/v1/schedules/{schedule_id}")
    if as_json:
        print_json(schedule)
        return
    _print_schedule(schedule)
    if schedule["recent_fires"]:
        _print_fires(schedule["recent_fires"], title="recent fires")
    else:
        out.print("recent fires: none yet", highlight=False)


@app.command("fires")
def fires(schedule_id: int, limit: int = 100, as_json: JsonOpt = False) -> None:
    """Every due time recorded, newest first: the run it made, or why none."""
    with ApiClient() as client:
        found = client.get(f"/v1/schedules/{schedule_id}/fires", limit=limit)
    if as_json:
        print_json(found)
    elif found:
        _print_fires(found)
    else:
        out.print(f"schedule {schedule_id} has not fired yet", highlight=False)


@app.command("runs")
def runs(schedule_id: int, limit: int = RUNS_SHOWN, as_json: JsonOpt = False) -> None:
    """The runs the schedule fired, newest first, each with the due time that made it."""
    with ApiClient() as client:
        # The fires first: a schedule that is gone (or not yours) is a 404, not no runs.
        due = {f["run_id"]: f["due_at"] for f in
               client.get(f"/v1/schedules/{schedule_id}/fires", limit=1000)
               if f["run_id"] is not None}
        page = client.get("/v1/runs", schedule_id=schedule_id, limit=limit)
    if as_json:
        print_json(page)
        return
    table = Table("run", "fired for (New York)", "status", "session(s)", "steps", "return %",
                  box=None)
    for r in page["items"]:
        spec, ret = r["spec"], (r.get("result") or {}).get("return_pct")
        table.add_row(str(r["id"]), _new_york(due[r["id"]]) if r["id"] in due else "-",
                      r["status"], spec.get("date") or f"{spec['start']}..{spec['end']}",
                      f"{r['progress']['step']}/{r['progress']['total']}",
                      "-" if ret is None else str(ret))
    out.print(table)


@app.command("pause")
def pause(schedule_id: int, as_json: JsonOpt = False) -> None:
    """No fire while paused; the runs it made go on."""
    with ApiClient() as client:
        schedule = client.post(f"/v1/schedules/{schedule_id}/pause")
    if as_json:
        print_json(schedule)
    else:
        out.print(f"schedule {schedule['id']} paused", highlight=False)


@app.command("resume")
def resume(schedule_id: int, as_json: JsonOpt = False) -> None:
    """Fire again from now on; the due times passed while paused are not made up."""
    with ApiClient() as client:
        schedule = client.post(f"/v1/schedules/{schedule_id}/resume")
    if as_json:
        print_json(schedule)
    else:
        out.print(f"schedule {schedule['id']} resumed; next fire "
                  f"{_next(schedule['next_fires'][:1], schedule['paused'])}", highlight=False)


@app.command("rm")
def rm(schedule_id: int, as_json: JsonOpt = False) -> None:
    """Delete the schedule and its fire records; the runs it made stay."""
    with ApiClient() as client:
        client.request("DELETE", f"/v1/schedules/{schedule_id}")
    if as_json:  # the API answers 204: say what was done, as one object for scripts
        print_json({"id": schedule_id, "deleted": True})
    else:
        out.print(f"schedule {schedule_id} deleted", highlight=False)


def _print_schedule(s: dict[str, Any]) -> None:
    out.print(f"schedule {s['id']}" + (f" ({s['name']})" if s["name"] else "")
              + f": {s['cron']} in {s['timezone']}, {s['calendar']} sessions only; model "
              f"{s['model_id']}; " + ("paused" if s["paused"] else "active"), highlight=False)
    out.print(f"each fire runs: {_template(s['template'])}", highlight=False)
    out.print(f"next fires: {_next(s['next_fires'], s['paused'])}", highlight=False)


def _template(t: dict[str, Any]) -> str:
    """The run a fire makes, in a line: what it plays, which session(s), who decides."""
    ending = "the fire's session" if t.get("session") == SessionRule.TODAY \
        else "the last closed session"
    span = (f"{t.get('sessions', 5)} sessions to {ending}" if t["mode"] == Mode.DAILY
            else ending)
    parts = [f"{t['mode']} {','.join(t['symbols'])}, {span}"]
    parts += [f"{key} {t[key]}" for key in ("decider", "data") if t.get(key) is not None]
    if t.get("decider_params"):
        parts.append(f"params {json.dumps(t['decider_params'])}")
    return "; ".join(parts)


def _next(fires: list[str], paused: bool) -> str:
    if paused:
        return "none (paused)"
    return ", ".join(_new_york(f) for f in fires) or "none within the exchange calendar"


def _print_fires(found: list[dict[str, Any]], title: str | None = None) -> None:
    table = Table("due (New York)", "outcome", "run", "reason", title=title, box=None)
    for f in found:
        table.add_row(_new_york(f["due_at"]), f["outcome"],
                      "-" if f["run_id"] is None else str(f["run_id"]), f["reason"] or "-")
    out.print(table)


def _new_york(stamp: str) -> str:
    """An API time (UTC) as the rule reads it: New York wall time, EST or EDT."""
    return dt.datetime.fromisoformat(stamp).astimezone(NEW_YORK).strftime(
        "%a %Y-%m-%d %H:%M %Z")
