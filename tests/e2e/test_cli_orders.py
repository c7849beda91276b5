"""`tickrun runs orders` as a user runs it against `tickrun dev`: a buy-and-hold run's
market order, and a limit order placed and cancelled in its ledger, as a table and as
JSON, filtered by state."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from core.records import Order, OrderType, Side
from core.store import open_store
from runner.trading import TradingService
from tests.e2e.test_cli import TICKRUN, dev_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(300)


def test_runs_orders_lists_a_runs_orders(dev_server: dict[str, str],  # noqa: F811
                                         tmp_path: Path) -> None:
    def tickrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TICKRUN, *args], cwd=tmp_path,
                              env={**dev_server, "COLUMNS": "200"}, capture_output=True,
                              text=True, timeout=240)

    model = json.loads(tickrun("models", "create", "holder", "--json").stdout)["id"]
    made = tickrun("runs", "create", "--model", str(model), "--symbol", "msft", "--start",
                   "2024-01-02", "--end", "2024-01-12", "--decider", "buy_and_hold",
                   "--data", "synthetic", "--follow", "--json")
    assert made.returncode == 0, made.stderr
    run = json.loads(made.stdout.strip().splitlines()[-1])
    assert run["status"] == "completed"
    store = open_store(f"sqlite:///{tmp_path / '.tickrun' / 'tickrun.db'}")
    try:  # a limit order the run placed at its third step and cancelled at its fourth
        trading = TradingService(store)
        limit = trading.place(run["id"], 2, 50, Order(Side.BUY, "MSFT", Decimal(3),
                                                      OrderType.LIMIT,
                                                      limit_price=Decimal("101.25")),
                              bar_time=dt.datetime(2024, 1, 4, tzinfo=dt.UTC))
        trading.cancel(run["id"], limit.id, step=3, bar_time=dt.datetime(2024, 1, 5,
                                                                         tzinfo=dt.UTC))
    finally:
        store.close()

    every = tickrun("runs", "orders", str(run["id"]), "--json")
    assert every.returncode == 0, every.stderr
    orders = json.loads(every.stdout)
    assert [(o["type"], o["side"], o["state"]) for o in orders] == [
        ("market", "buy", "filled"), ("limit", "buy", "cancelled")]
    assert orders[0]["trade_id"] is not None and orders[1]["id"] == limit.id

    table = tickrun("runs", "orders", str(run["id"]))
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0][:6] == ["id", "step", "side", "qty", "symbol", "type"]
    cancelled = next(r for r in rows if r[0] == str(limit.id))
    assert cancelled[1:10] == ["3", "buy", "3", "MSFT", "limit", "101.25", "-", "day",
                               "cancelled"]
    assert "cancelled by the decider" in table.stdout

    only = json.loads(tickrun("runs", "orders", str(run["id"]), "--state", "cancelled",
                              "--json").stdout)
    assert [o["id"] for o in only] == [limit.id]
    assert len(json.loads(tickrun("runs", "orders", str(run["id"]), "--limit", "1",
                                  "--json").stdout)) == 1
    none_open = tickrun("runs", "orders", str(run["id"]), "--state", "open")
    assert none_open.returncode == 0 and f"run {run['id']} has no open orders" in \
        none_open.stdout
    bad = tickrun("runs", "orders", str(run["id"]), "--state", "pending")
    assert bad.returncode == 2 and "pending" in bad.stderr
    missing = tickrun("runs", "orders", "999999")
    assert missing.returncode == 1 and "error 404" in missing.stderr
