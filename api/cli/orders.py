"""`tickrun runs orders RUN_ID`: a run's orders, oldest first, as a table or JSON.

It reads GET /v1/runs/{id}/orders in keyset pages (after_id) up to --limit orders, so a
run with many orders costs as many requests as pages, never one unbounded answer.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import ApiClient
from api.cli.output import JsonOpt, out, print_json
from core.records import OrderState

PAGE = 1000  # the API's default page, under its maximum of 5,000


def orders_command(
    run_id: int,
    state: Annotated[OrderState | None, typer.Option(
        help="Only orders in this state", show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most orders to show")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """A run's orders, oldest first: market, limit, stop and stop-limit orders, and the
    engine's own (stop-losses, margin calls, flat at the close)."""
    with ApiClient() as client:
        orders = fetch(client, run_id, state, limit)
    if as_json:
        print_json(orders)
        return
    if not orders:
        out.print(f"run {run_id} has no {state.value + ' ' if state else ''}orders",
                  highlight=False)
        return
    table = Table("id", "step", "side", "qty", "symbol", "type", "limit", "stop", "tif",
                  "state", "fill", "filled at", "note", box=None)
    for o in orders:
        table.add_row(str(o["id"]), str(o["step"] + 1), o["side"], _num(o["quantity"]),
                      o["symbol"], o["type"], _num(o["limit_price"]), _num(o["stop_price"]),
                      o["time_in_force"], o["state"], _num(o["fill_price"]),
                      _when(o["filled_at"]), _note(o))
    out.print(table)


def fetch(client: ApiClient, run_id: int, state: OrderState | None,
          limit: int) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    after = 0
    while len(orders) < limit:
        size = min(PAGE, limit - len(orders))
        page = client.get(f"/v1/runs/{run_id}/orders", state=state.value if state else None,
                          after_id=after, limit=size)
        orders += page
        if len(page) < size:
            break
        after = page[-1]["id"]
    return orders


def _num(value: str | None) -> str:
    """A decimal from the API as people write it: 10.000000 reads 10."""
    if value is None:
        return "-"
    return format(Decimal(value).normalize(), "f")


def _when(stamp: str | None) -> str:
    if stamp is None:
        return "-"
    time = dt.datetime.fromisoformat(stamp)
    return time.date().isoformat() if time.time() == dt.time() else time.isoformat()


def _note(o: dict[str, Any]) -> str:
    """Who placed it when not the decider, and why it ended when it did not fill."""
    parts = []
    if o["origin"] == "stop_loss" and o["parent_id"] is not None:
        parts.append(f"stop-loss of #{o['parent_id']}")
    elif o["origin"] != "decider":
        parts.append(str(o["origin"]).replace("_", " "))
    if o["reason"] and o["state"] != "filled":
        parts.append(str(o["reason"]))
    return "; ".join(parts)
