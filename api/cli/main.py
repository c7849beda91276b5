"""`tickrun`: run the embedded default, and start, follow and stop runs over the API."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from rich.table import Table

from api.cli import audit, batches, data, leaderboard, orders, retention, schedules, usage
from api.cli.client import ApiClient, ApiError
from api.cli.follow import follow
from api.cli.output import JsonOpt, err, out, print_json
from api.cli.stream import run_events

app = typer.Typer(help="Run AI trading agent sessions.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
runs_app = typer.Typer(help="Start, list, follow and stop runs.", no_args_is_help=True)
models_app = typer.Typer(help="Trading models: LLM, rules, instructions.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
app.add_typer(data.app, name="data")
app.add_typer(usage.app, name="usage")
app.add_typer(batches.app, name="batches")
app.add_typer(schedules.app, name="schedules")
app.command("leaderboard")(leaderboard.leaderboard_command)
# An operator command, in-process against TICKRUN_DATABASE_URL like `tickrun data`.
runs_app.command("prune")(retention.prune_command)
runs_app.command("orders")(orders.orders_command)
runs_app.command("audit")(audit.audit_command)



class DataChoice(StrEnum):
    POLYGON = "polygon"
    ALPACA = "alpaca"
    SYNTHETIC = "synthetic"
    FILES = "files"
    TABLE = "table"


DataDir = Annotated[Path, typer.Option(help="Where the embedded default keeps its files")]


def _client() -> ApiClient:
    return ApiClient()


class HelpNode(Protocol):
    """A click command or group, as far as its help is concerned."""

    help: str | None


def reflow_help(command: HelpNode) -> None:
    """Docstrings break lines where the source does; a help text is paragraphs that the
    terminal wraps. Each paragraph's single line breaks become spaces (a paragraph that
    opens with click's \\b keeps its lines)."""
    if command.help:
        command.help = "\n\n".join(
            p if p.startswith("\b") else " ".join(p.split())
            for p in inspect.cleandoc(command.help).split("\n\n"))
    for sub in getattr(command, "commands", {}).values():
        reflow_help(sub)


def main() -> None:
    """The `tickrun` command: an API error is one red line and exit code 1, whichever
    command met it."""
    try:
        command = typer.main.get_command(app)
        reflow_help(command)
        command()
    except ApiError as exc:
        err.print(f"[red]error[/red] {exc.detail}" if exc.status == 0
                  else f"[red]error {exc.status}[/red] {exc.detail}")
        sys.exit(1)


# -- the embedded default ----------------------------------------------------------------
@app.command()
def dev(host: str = "127.0.0.1", port: int = 8321,
        data_dir: DataDir = Path(".tickrun")) -> None:
    """API + reconciler + local runner processes on SQLite, in this process."""
    from api.cli.dev import run_dev

    err.print(f"tickrun dev on http://{host}:{port} (data in {data_dir}/; the CLI reads "
              f"its token from {data_dir}/dev-token)")
    err.print(f"web console: http://{host}:{port}/ui (sign in with the token in "
              f"{data_dir}/dev-token)")
    run_dev(host, port, data_dir)


@app.command()
def demo(as_json: JsonOpt = False, symbol: str = "AAPL",
         data_dir: DataDir = Path(".tickrun")) -> None:
    """Start the embedded default, play one intraday session with the SMA baseline, and
    follow it to the end."""
    from api.cli.dev import BackgroundServer
    from core.calendar import previous_sessions, today_in_new_york

    with BackgroundServer(data_dir) as server:
        client = ApiClient(server.url, server.token)
        model = _demo_model(client)
        day = previous_sessions(today_in_new_york(), 1)[-1]
        run = client.post("/v1/runs", {"model_id": model["id"], "mode": "intraday",
                                       "symbols": [symbol], "date": day.isoformat(),
                                       "decider": "sma_crossover", "data": "synthetic"})
        if not as_json:
            err.print(f"run {run['id']}: {symbol} on {day}, {run['progress']['total']} "
                      f"minute steps, SMA crossover on {SYNTHETIC}")
            err.print(f"watch it in the web console: {server.url}/ui/runs/{run['id']} (sign "
                      f"in with the token in {data_dir}/dev-token)")
        follow(client, run["id"], err, quiet=as_json)
        final = client.get(f"/v1/runs/{run['id']}")
    if as_json:
        print_json(final)
    else:
        _summary(final)
    if final["status"] != "completed":
        raise typer.Exit(1)


def _show(run: dict[str, Any], as_json: bool) -> None:
    print_json(run) if as_json else _summary(run)


def _demo_model(client: ApiClient) -> dict[str, Any]:
    for model in client.get("/v1/models", limit=500)["items"]:
        if model["signature"] == "demo-sma":
            return dict(model)
    return dict(client.post("/v1/models", {
        "signature": "demo-sma", "custom_instructions": "SMA(5/20) crossover baseline"}))


SYNTHETIC = "synthetic bars (seeded random, not market data)"


def _data_source(run: dict[str, Any]) -> str:
    data = (run.get("spec") or {}).get("data")
    if data is None:
        return "-"
    return SYNTHETIC if data == "synthetic" else {
        "polygon": "polygon (Massive) bars", "alpaca": "alpaca bars",
        "files": "bars from files", "table": "bars from the stock_prices table"}.get(
            data, str(data))


def _summary(run: dict[str, Any]) -> None:
    result = run.get("result") or {}
    bench = result.get("benchmark") or {}
    table = Table(title=f"run {run['id']}: {run['status']}"
                        + (f" ({run['status_reason']})" if run.get("status_reason") else ""))
    table.add_column("")
    table.add_column(_decider_of(run), justify="right")  # who traded: llm, sma_crossover...
    table.add_column("buy & hold", justify="right")
    for key, label in (("final_equity", "final equity"), ("return_pct", "return %"),
                       ("max_drawdown_pct", "max drawdown %"), ("sharpe", "Sharpe"),
                       ("trades", "trades"), ("win_rate", "win rate")):
        table.add_row(label, _fmt(result.get(key)), _fmt(bench.get(key)))
    table.add_row("steps", f"{run['progress']['step']}/{run['progress']['total']}", "")
    out.print(table)
    if why := run.get("decider_reason") or result.get("decider_reason"):
        out.print(f"decider: {why}", highlight=False)
    if spend := _llm_usage(result):
        out.print(spend, highlight=False)
    out.print(f"data: {_data_source(run)}", highlight=False)


def _decider_of(run: dict[str, Any]) -> str:
    """The decider that played (or plays) the run, as the runner resolved it."""
    return str(run.get("decider") or (run.get("result") or {}).get("decider")
               or (run.get("spec") or {}).get("decider") or "-")


def _llm_usage(result: dict[str, Any]) -> str | None:
    tokens_in = int(result.get("tokens_in") or 0)
    if not tokens_in and not result.get("tokens_out"):
        return None
    cached = int(result.get("tokens_cached") or 0)
    line = (f"LLM: {tokens_in:,} tokens in ({cached:,} cached), "
            f"{int(result.get('tokens_out') or 0):,} out, cost ${result.get('cost') or 0}")
    if unknown := result.get("unknown_cost_decisions"):
        line += f"; cost unknown for {unknown} decision(s) (no price for the model)"
    return line


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}"
    if isinstance(value, str) and value.replace(".", "", 1).lstrip("-").isdigit():
        return f"{float(value):,.2f}"  # money arrives as a decimal string
    return str(value)


# -- runs --------------------------------------------------------------------------------
@runs_app.command("create")
def runs_create(
    model_id: Annotated[int, typer.Option("--model", help="Model id")],
    symbols: Annotated[list[str], typer.Option("--symbol", help="Ticker; repeat for more")],
    date: Annotated[str | None, typer.Option(help="Intraday: the session date")] = None,
    start: Annotated[str | None, typer.Option(help="Daily: first date")] = None,
    end: Annotated[str | None, typer.Option(help="Daily: last date")] = None,
    cash: Annotated[str, typer.Option(help="Initial cash")] = "100000",
    decider: Annotated[str | None, typer.Option(help="llm, sma_crossover, buy_and_hold, "
                                                     "random, replay")] = None,
    data_source: Annotated[DataChoice | None, typer.Option(
        "--data", help="Where bars come from; default: the bar cache, then the configured "
                       "provider (synthetic: seeded random bars, not market data)",
        show_default=False)] = None,
    max_cost_usd: Annotated[str | None, typer.Option(
        "--max-cost-usd", help="LLM budget in dollars: the run stops at the step that "
                               "reaches it", show_default=False)] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", help="LLM token budget (input + output) of the run",
        show_default=False)] = None,
    live: Annotated[bool, typer.Option(
        "--live", help="Trade the session as it happens (today's until its close, else the "
                       "next), from the provider's stream")] = False,
    broker: Annotated[str | None, typer.Option(
        help="Live runs: sim (tickrun's fills, the default) or alpaca_paper (your Alpaca "
             "paper account)", show_default=False)] = None,
    flatten_on_stop: Annotated[bool, typer.Option(
        "--flatten-on-stop", help="Live runs: close the positions when stopped")] = False,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    follow_run: Annotated[bool, typer.Option("--follow", help="Follow it to the end")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue a run: intraday with --date, daily with --start/--end, live with --live."""
    body: dict[str, Any] = {"model_id": model_id, "symbols": [s.upper() for s in symbols],
                            "mode": "intraday" if date or live else "daily",
                            "initial_cash": cash}
    if live:
        body["live"] = {k: v for k, v in (("broker", broker),
                                          ("flatten_on_stop", flatten_on_stop or None))
                        if v is not None}
    body.update({k: v for k, v in (("date", date), ("start", start), ("end", end),
                                   ("decider", decider), ("data", data_source),
                                   ("max_cost_usd", max_cost_usd), ("max_tokens", max_tokens))
                 if v is not None})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    client = _client()
    run = client.post("/v1/runs", body, headers=headers)
    if follow_run:
        follow(client, run["id"], err, quiet=as_json)
        run = client.get(f"/v1/runs/{run['id']}")
    if as_json:
        print_json(run)
    elif follow_run:
        _summary(run)
    else:
        out.print(f"run {run['id']} {run['status']}")


@runs_app.command("ls")
def runs_ls(status: str | None = None, symbol: str | None = None,
            model: Annotated[int | None, typer.Option(help="Model id")] = None,
            limit: int = 20, as_json: JsonOpt = False) -> None:
    """Your runs, newest first."""
    page = _client().get("/v1/runs", status=status, symbol=symbol, model_id=model,
                         limit=limit)
    if as_json:
        print_json(page)
        return
    table = Table("id", "status", "decider", "mode", "symbols", "dates", "steps", "return %",
                  "created", box=None)
    for r in page["items"]:
        spec = r["spec"]
        dates = spec.get("date") or f"{spec.get('start')}..{spec.get('end')}"
        ret = (r.get("result") or {}).get("return_pct")
        table.add_row(str(r["id"]), r["status"], _decider_of(r), spec["mode"],
                      ",".join(spec["symbols"]), dates,
                      f"{r['progress']['step']}/{r['progress']['total']}", _fmt(ret),
                      _age(r["created_at"]))
    out.print(table)


def _age(stamp: str) -> str:
    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stamp)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


@runs_app.command("get")
def runs_get(run_id: int, as_json: JsonOpt = False) -> None:
    """A run: its status, progress and, once it ended, its result."""
    run = _client().get(f"/v1/runs/{run_id}")
    _show(run, as_json)


@runs_app.command("stop")
def runs_stop(run_id: Annotated[int | None, typer.Argument()] = None,
              all_runs: Annotated[bool, typer.Option("--all", help="Every run of yours")] = False,
              as_json: JsonOpt = False) -> None:
    """Stop a run (partial results are kept), or all of yours with --all."""
    if (run_id is None) == (not all_runs):
        err.print("give a run id or --all")
        raise typer.Exit(2)
    client = _client()
    answer = (client.post("/v1/runs/stop-all") if all_runs
              else client.post(f"/v1/runs/{run_id}/stop"))
    if as_json:
        print_json(answer)
    elif all_runs:
        out.print(f"stopping {len(answer['stopping'])} runs: {answer['stopping']}")
    else:
        out.print(f"run {answer['id']} {answer['status']}")


@runs_app.command("rm")
def runs_rm(run_id: int) -> None:
    """Delete a run and its records (stopping it first)."""
    _client().request("DELETE", f"/v1/runs/{run_id}")
    out.print(f"run {run_id} deleted")


@runs_app.command("follow")
def runs_follow(run_id: int, as_json: JsonOpt = False) -> None:
    """A progress bar from the live event stream, then the summary."""
    client = _client()
    follow(client, run_id, err, quiet=as_json)
    run = client.get(f"/v1/runs/{run_id}")
    _show(run, as_json)


@runs_app.command("events")
def runs_events(
    run_id: int,
    after: Annotated[str | None, typer.Option(
        help="Only the events after this event id (a Last-Event-ID)")] = None,
) -> None:
    """The run's events as JSON lines (id, type, data), live until its result; each
    event once, across dropped connections."""
    for event in run_events(_client(), run_id, after=after):
        print(json.dumps(event.to_json(), separators=(",", ":")), flush=True)


# -- models ------------------------------------------------------------------------------
LlmOpt = Annotated[str | None, typer.Option(
    help="The model's LLM, e.g. openai/gpt-4.1-mini (OpenAI or OpenRouter name)")]
RulesOpt = Annotated[str | None, typer.Option(help="Rules added to the agent's prompt")]
InstructionsOpt = Annotated[str | None, typer.Option(
    help="Instructions added to the agent's prompt")]
ParamsOpt = Annotated[str | None, typer.Option(
    help='Parameters as a JSON object, e.g. \'{"temperature": 0.2}\'')]


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--params") from exc


@models_app.command("create")
def models_create(signature: str, llm: LlmOpt = None, rules: RulesOpt = None,
                  instructions: InstructionsOpt = None, params: ParamsOpt = None,
                  as_json: JsonOpt = False) -> None:
    """A trading model: a signature unique among yours, its LLM, rules, instructions and
    parameters."""
    body = {"signature": signature, "llm": llm, "custom_rules": rules,
            "custom_instructions": instructions, "parameters": _json_object(params or "{}")}
    model = _client().post("/v1/models", body)
    print_json(model) if as_json else out.print(f"model {model['id']} {model['signature']}")


@models_app.command("ls")
def models_ls(as_json: JsonOpt = False) -> None:
    """Your models."""
    page = _client().get("/v1/models", limit=500)
    if as_json:
        print_json(page)
        return
    table = Table("id", "signature", "llm", "parameters", box=None)
    for m in page["items"]:
        table.add_row(str(m["id"]), m["signature"], m["llm"] or "-", json.dumps(m["parameters"]))
    out.print(table)


@models_app.command("get")
def models_get(model_id: int) -> None:
    """A model as JSON."""
    print_json(_client().get(f"/v1/models/{model_id}"))


@models_app.command("update")
def models_update(model_id: int, llm: LlmOpt = None, rules: RulesOpt = None,
                  instructions: InstructionsOpt = None, params: ParamsOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Change a model; what is not given stays as it is."""
    changes = {k: v for k, v in (("llm", llm), ("custom_rules", rules),
                                 ("custom_instructions", instructions)) if v is not None}
    if params is not None:
        changes["parameters"] = _json_object(params)
    model = _client().request("PATCH", f"/v1/models/{model_id}", json=changes)
    print_json(model) if as_json else out.print(f"model {model['id']} updated")


@models_app.command("rm")
def models_rm(model_id: int) -> None:
    """Delete a model (refused while runs or schedules use it)."""
    _client().request("DELETE", f"/v1/models/{model_id}")
    out.print(f"model {model_id} deleted")
