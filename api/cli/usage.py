"""`tickrun usage`: your LLM tokens and spend per day and model, and your daily limit;
`tickrun usage limit USER AMOUNT` sets a user's daily limit (operators)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import ApiClient
from api.cli.output import JsonOpt, err, out, print_json

app = typer.Typer(help="LLM tokens and spend, and daily spend limits.",
                  invoke_without_command=True)


@app.callback()
def usage(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=366, help="UTC days back")] = 7,
    user: Annotated[str | None, typer.Option(help="Operators: another user's")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Your LLM tokens and cost per UTC day and model, and today's spend against your
    daily limit."""
    if ctx.invoked_subcommand is not None:
        return
    with ApiClient() as client:
        report = client.get("/v1/usage", days=days, user_id=user)
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    limit = report["daily_limit_usd"]
    spent = Decimal(report["spent_today_usd"])
    line = f"{report['user_id']}: ${spent:,.4f} spent today ({report['today']} UTC)"
    if limit is not None:
        line += f" of a ${Decimal(limit):,.2f} daily limit ({report['limit_source']})"
    out.print(line, highlight=False)
    if not report["days"]:
        out.print("no LLM decisions in this period", highlight=False)
        return
    table = Table("day", "model", "llm", "decisions", "tokens in", "cached", "tokens out",
                  "cost $", box=None)
    for d in report["days"]:
        cost = f"{Decimal(d['cost_usd']):,.4f}"
        if d["unknown_cost_decisions"]:
            cost += f" (+{d['unknown_cost_decisions']} unknown)"
        table.add_row(d["day"], d["model"], d["llm"] or "-", f"{d['decisions']:,}",
                      f"{d['tokens_in']:,}", f"{d['tokens_cached']:,}", f"{d['tokens_out']:,}",
                      cost)
    out.print(table)


@app.command("limit")
def set_limit(
    user: Annotated[str, typer.Argument(help="The user's id")],
    amount: Annotated[str | None, typer.Argument(
        help="US dollars per UTC day, or `none` for no limit", show_default=False)] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Back to the default limit")] = False,
) -> None:
    """Set a user's own daily LLM spend limit (operators)."""
    with ApiClient() as client:
        if clear:
            client.request("DELETE", f"/v1/usage/limits/{user}")
            out.print(f"{user}: back on the default daily limit", highlight=False)
            return
        if amount is None:
            err.print("give an AMOUNT in dollars, `none`, or --clear")
            raise typer.Exit(2)
        value = _amount(amount)
        client.request("PUT", f"/v1/usage/limits/{user}", json={"daily_cost_usd": value})
    out.print(f"{user}: daily LLM spend limit "
              + ("removed (no limit)" if value is None else f"${Decimal(value):,.2f}"),
              highlight=False)


def _amount(text: str) -> str | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        err.print(f"not an amount of dollars: {text!r}")
        raise typer.Exit(2) from None
    return str(value)
