"""`tickrun usage` as a user runs it against `tickrun dev`: the day's spend per model, and
an operator's daily limit set and cleared (the dev token is an operator)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from core.records import Decision
from core.store import open_store
from tests.e2e.test_cli import TICKRUN, dev_server  # noqa: F401  (the fixture)
from tests.factories import daily_spec, make_model, make_run

pytestmark = pytest.mark.timeout(300)


def usage(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TICKRUN, "usage", *args], cwd=cwd, env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=120)


def test_usage_shows_the_days_spend_and_the_limit(dev_server: dict[str, str],  # noqa: F811
                                                  tmp_path: Path) -> None:
    me = json.loads(usage("--json", cwd=tmp_path, env=dev_server).stdout)
    assert (me["days"], me["limit_source"]) == ([], "none")
    store = open_store(f"sqlite:///{tmp_path / '.tickrun' / 'tickrun.db'}")
    try:  # a decision of an LLM run of this user, as a runner records it
        model = make_model(store, me["user_id"], "gpt-agent", llm="openai/gpt-4.1-mini")
        run = make_run(store, daily_spec(), user_id=me["user_id"], model=model)
        store.record_decision(Decision(
            run_id=run.id, step=0, bar_time=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
            action="hold", orders=[], reasoning="x", outcome="hold", latency_ms=1.0,
            tokens_in=1200, tokens_out=80, tokens_cached=1024, cost=Decimal("0.0012")))
    finally:
        store.close()
    set_limit = usage("limit", me["user_id"], "3.5", cwd=tmp_path, env=dev_server)
    assert set_limit.returncode == 0, set_limit.stderr
    assert "daily LLM spend limit $3.50" in set_limit.stdout
    shown = usage(cwd=tmp_path, env=dev_server)
    assert shown.returncode == 0, shown.stderr
    assert "$0.0012 spent today" in shown.stdout and "of a $3.50 daily limit (user)" in \
        shown.stdout, shown.stdout
    assert "gpt-agent" in shown.stdout and "1,024" in shown.stdout, shown.stdout
    assert usage("limit", me["user_id"], "--clear", cwd=tmp_path,
                 env=dev_server).returncode == 0
    again = usage("limit", me["user_id"], "--clear", cwd=tmp_path, env=dev_server)
    assert again.returncode == 1 and "has no daily limit of their own" in again.stderr
    bad = usage("limit", me["user_id"], "lots", cwd=tmp_path, env=dev_server)
    assert bad.returncode == 2 and "not an amount of dollars" in bad.stderr


def test_runs_create_takes_a_budget(dev_server: dict[str, str], tmp_path: Path  # noqa: F811
                                    ) -> None:
    def tickrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TICKRUN, *args], cwd=tmp_path, env=dev_server,
                              capture_output=True, text=True, timeout=120)
    model = json.loads(tickrun("models", "create", "budgeted", "--json").stdout)["id"]
    made = tickrun("runs", "create", "--model", str(model), "--symbol", "msft", "--start",
                   "2024-01-02", "--end", "2024-01-05", "--data", "synthetic",
                   "--max-cost-usd", "0.25", "--max-tokens", "5000", "--json")
    assert made.returncode == 0, made.stderr
    spec = json.loads(made.stdout)["spec"]
    assert (spec["max_cost_usd"], spec["max_tokens"]) == ("0.25", 5000)
    refused = tickrun("runs", "create", "--model", str(model), "--symbol", "msft", "--start",
                      "2024-01-02", "--end", "2024-01-05", "--max-cost-usd", "-1")
    assert refused.returncode == 1 and "error 422" in refused.stderr, refused.stderr
