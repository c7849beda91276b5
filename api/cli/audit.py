"""`tickrun runs audit RUN_ID`: what a run's research tools answered, against the end of
each bar decided on (GET /v1/runs/{id}/audit)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import ApiClient
from api.cli.output import JsonOpt, out, print_json


def audit_command(
    run_id: int,
    all_items: Annotated[bool, typer.Option(
        "--all", help="List every dated item, not only those past their bar")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The look-ahead audit of a run: clean, N items answered before they were known,
    or possible (an outside tool that does not answer as of the bar). Exits 1 unless
    clean, so a script can gate on it."""
    with ApiClient() as client:
        audit = client.get(f"/v1/runs/{run_id}/audit")
    if as_json:
        print_json(audit)
    else:
        _print(audit, all_items)
    if audit["lookahead"] != "clean":
        raise typer.Exit(1)


def _print(audit: dict[str, Any], all_items: bool) -> None:
    out.print(f"run {audit['run_id']}: look-ahead {audit['lookahead']} "
              f"({audit['dated_items']} dated item(s) in {audit['research_calls']} research "
              f"call(s), {audit['violations']} past their bar, {audit['outside_calls']} "
              "outside call(s) not point-in-time)", highlight=False)
    shown = [i for i in audit["items"] if all_items or not i["ok"]]
    if shown:
        table = Table("step", "as of", "tool", "item", "known at", "ahead by", "ok", box=None)
        for i in shown:
            ahead = i["seconds_before_as_of"]
            table.add_row(str(i["step"] + 1), i["as_of"], i["tool"], i["label"],
                          i["known_at"] or "undated",
                          "-" if ahead is None or ahead >= 0 else f"{-ahead:,.0f}s",
                          "yes" if i["ok"] else "NO")
        out.print(table)
    for call in audit["outside"]:
        out.print(f"step {call['step'] + 1}: {call['tool']} on {call['server'] or '?'} is not "
                  "point-in-time", highlight=False)
