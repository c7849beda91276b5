"""`tickrun data` as an operator runs it: fetch into the bar cache in-process against
TICKRUN_DATABASE_URL (PostgreSQL or SQLite), list it; and the run summary naming its data."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from core.marketdata.settings import MarketDataSettings
from tests.apiserver import Backend, running_api
from tests.e2e.test_cli import TICKRUN
from tests.e2e.test_cli import clean_env as user_env
from tests.fakes.polygon_server import FakePolygon

pytestmark = pytest.mark.timeout(300)


def clean_env(**extra: str) -> dict[str, str]:
    """A user's environment (test_cli's), on a terminal wide enough for the tables."""
    return user_env(COLUMNS="200", **extra)


def tickrun(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TICKRUN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


def ok_json(*args: str, cwd: Path, env: dict[str, str]) -> Any:
    done = tickrun(*args, "--json", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_line_error(done: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    """The error is one line, the last (a progress bar may stand above it, saying how far
    the fetch got); no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert errors == lines[-1:] and says in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_ls_of_an_empty_cache(database_url: str, tmp_path: Path) -> None:
    env = clean_env(TICKRUN_DATABASE_URL=database_url)
    assert ok_json("data", "ls", cwd=tmp_path, env=env) == {"items": []}
    done = tickrun("data", "ls", "--symbol", "aapl", cwd=tmp_path, env=env)
    assert done.returncode == 0 and done.stdout == ""
    assert "the bar cache is empty for that filter" in done.stderr


def test_ls_migrates_a_new_embedded_database(tmp_path: Path) -> None:
    """Like `tickrun dev`, the default SQLite file is created and migrated on first use."""
    assert ok_json("data", "ls", cwd=tmp_path, env=clean_env()) == {"items": []}
    assert (tmp_path / ".tickrun" / "tickrun.db").exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--start", "2999-01-04", "--end", "2999-01-05"], "is in the future"),
    (["--start", "2025-03-07", "--end", "2025-03-03"], "is after end"),
    (["--start", "2025-01-02", "--end", "2025-03-07", "--interval", "1m"],
     "at most 31 sessions of minute bars"),
    (["--start", "1990-01-02", "--end", "2025-03-07"], "at most 30 years of daily bars"),
    (["--start", "2025-03-08", "--end", "2025-03-09"], "no trading session"),
    (["--start", "2025-03-03", "--end", "2025-03-07"], "TICKRUN_POLYGON_API_KEY"),
    (["--start", "2025-03-03", "--end", "2025-03-07", "--source", "alpaca"],
     "TICKRUN_ALPACA_API_KEY_ID"),
])
def test_fetch_refuses_bad_input_with_one_line_and_exit_2(
        sqlite_url: str, tmp_path: Path, args: list[str], says: str) -> None:
    env = clean_env(TICKRUN_DATABASE_URL=sqlite_url)
    one_line_error(tickrun("data", "fetch", "AAPL", *args, cwd=tmp_path, env=env), 2, says)


def test_fetch_with_a_blank_key_exits_2(sqlite_url: str, tmp_path: Path) -> None:
    env = clean_env(TICKRUN_DATABASE_URL=sqlite_url, TICKRUN_POLYGON_API_KEY="")
    one_line_error(tickrun("data", "fetch", "AAPL", "--start", "2025-03-03", "--end",
                           "2025-03-07", cwd=tmp_path, env=env), 2,
                   "no market data provider is configured: set TICKRUN_POLYGON_API_KEY")


def test_fetch_usage_errors_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    env = clean_env(TICKRUN_DATABASE_URL=sqlite_url, TICKRUN_POLYGON_API_KEY="k")
    for args in (["AAPL", "--start", "03/03/2025", "--end", "2025-03-07"],
                 ["AAPL", "--start", "2025-03-03", "--end", "2025-03-07", "--interval", "5m"],
                 ["AAPL", "--start", "2025-03-03", "--end", "2025-03-07", "--source", "yahoo"],
                 ["AAPL", "--end", "2025-03-07"]):
        done = tickrun("data", "fetch", *args, cwd=tmp_path, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    one_line_error(tickrun("data", "fetch", "not a ticker", "--start", "2025-03-03", "--end",
                           "2025-03-07", cwd=tmp_path, env=env), 2, "is not a ticker")


def test_demo_says_its_bars_are_synthetic(tmp_path: Path) -> None:
    done = tickrun("demo", cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "synthetic bars (seeded random, not market data)" in done.stderr  # the announcement
    assert "synthetic bars (seeded random, not market data)" in done.stdout  # the summary
    # The server's exit stops the runner it no longer needs; it is not restarted.
    assert "restart" not in done.stderr and "exited with" not in done.stderr, done.stderr


# -- fetches from the fake Massive/Polygon server -------------------------------------------
KEY = "polygon-test-key-1234"
DEV_TOKEN = "operator-token-for-the-cli-data-tests"


@pytest.fixture
def polygon() -> Iterator[FakePolygon]:
    with FakePolygon(KEY) as fake:
        yield fake


def polygon_env(database_url: str, fake: FakePolygon, key: str = KEY) -> dict[str, str]:
    return clean_env(TICKRUN_DATABASE_URL=database_url, TICKRUN_POLYGON_API_KEY=key,
                     TICKRUN_POLYGON_BASE_URL=fake.url)


def test_fetch_through_the_api_and_the_cli_fill_one_cache(
        backend: Backend, polygon: FakePolygon, tmp_path: Path) -> None:
    env = polygon_env(backend.database_url, polygon)
    settings = MarketDataSettings(polygon_api_key=SecretStr(KEY), polygon_base_url=polygon.url)
    with running_api(backend, reconcile=False, market_data=settings, auth_mode="dev",
                     dev_token=SecretStr(DEV_TOKEN)) as api:
        r = httpx.post(f"{api.url}/v1/data/fetches", timeout=60,
                       headers={"Authorization": f"Bearer {DEV_TOKEN}"},
                       json={"symbol": "MSFT", "start": "2024-01-02", "end": "2024-06-28",
                             "interval": "1d"})
        assert r.status_code == 200 and r.json()["days_fetched"] == 124, r.text

    # The CLI, in-process on the same database: minutes of AAPL, with its progress bar.
    done = tickrun("data", "fetch", "aapl", "--start", "2025-03-03", "--end", "2025-03-07",
                   "--interval", "1m", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "AAPL 1m from polygon" in done.stderr and "5/5 days" in done.stderr
    assert "1,950 bars" in done.stderr
    assert done.stdout.strip() == ("AAPL 1m from polygon: 5 session(s) 2025-03-03 to "
                                   "2025-03-07, 5 fetched, 0 already cached; 1,950 bars in "
                                   "the cache")
    assert KEY not in done.stdout + done.stderr

    # Fetched once: the same ranges again ask the provider nothing.
    asked = polygon.request_count
    again = ok_json("data", "fetch", "AAPL", "--start", "2025-03-03", "--end", "2025-03-07",
                    "--interval", "1m", cwd=tmp_path, env=env)
    assert again == {"source": "polygon", "symbol": "AAPL", "interval": "1m", "days": 5,
                     "days_fetched": 0, "bars": 1950}
    msft = ok_json("data", "fetch", "MSFT", "--start", "2024-01-02", "--end", "2024-06-28",
                   "--source", "polygon", cwd=tmp_path, env=env)
    assert (msft["days"], msft["days_fetched"], msft["bars"]) == (124, 0, 124)
    assert polygon.request_count == asked

    listed = ok_json("data", "ls", cwd=tmp_path, env=env)["items"]
    assert [(s["source"], s["symbol"], s["interval"], s["days"], s["bars"]) for s in listed] \
        == [("polygon", "AAPL", "1m", 5, 1950), ("polygon", "MSFT", "1d", 124, 124)]
    table = tickrun("data", "ls", cwd=tmp_path, env=env)
    assert table.returncode == 0, table.stderr
    lines = [line.split() for line in table.stdout.strip().splitlines()]
    assert lines[0] == ["source", "symbol", "interval", "first", "last", "days", "bars",
                        "fetched"]
    assert lines[1][:7] == ["polygon", "AAPL", "1m", "2025-03-03", "2025-03-07", "5", "1,950"]
    assert lines[2][:7] == ["polygon", "MSFT", "1d", "2024-01-02", "2024-06-28", "124", "124"]
    only = ok_json("data", "ls", "--symbol", "msft", "--source", "polygon", cwd=tmp_path,
                   env=env)
    assert only["items"] == listed[1:]


def test_fetch_with_a_wrong_key_exits_1_with_the_reason_and_changes_nothing(
        sqlite_url: str, polygon: FakePolygon, tmp_path: Path) -> None:
    env = polygon_env(sqlite_url, polygon, key="wrong-key-5678")
    done = tickrun("data", "fetch", "AAPL", "--start", "2025-03-03", "--end", "2025-03-07",
                   cwd=tmp_path, env=env)
    one_line_error(done, 1, "Unknown API Key")
    assert "TICKRUN_POLYGON_API_KEY" in done.stderr and "wrong-key-5678" not in done.stderr
    assert polygon.request_count == 1
    assert ok_json("data", "ls", cwd=tmp_path, env=env) == {"items": []}


def test_fetch_of_an_unknown_symbol_exits_1(sqlite_url: str, polygon: FakePolygon,
                                           tmp_path: Path) -> None:
    env = polygon_env(sqlite_url, polygon)
    one_line_error(tickrun("data", "fetch", "ZZZZ", "--start", "2025-03-03", "--end",
                           "2025-03-07", cwd=tmp_path, env=env), 1, "no bars for ZZZZ")
