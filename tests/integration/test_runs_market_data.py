"""Runs on real market data: the API resolves the source, runner processes fetch through
the official Massive client from a local server that speaks Polygon's protocol, and the
bar cache serves every later run of the session."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from core.exitcodes import EXIT_NO_RETRY
from core.marketdata.settings import MarketDataSettings
from core.store import open_store
from tests.apiserver import Backend, running_api, wait_status
from tests.factories import intraday_spec, make_run
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.polygon_server import NEW_YORK, FakePolygon, Market
from tests.integration.test_api_runs import create, create_model, intraday, sse_events
from tests.integration.test_runner_process import start_runner

pytestmark = pytest.mark.timeout(240)

KEY = "pk-test-not-a-real-key"
DAY = dt.date(2025, 6, 2)
HALF_DAY = dt.date(2024, 11, 29)
GAPS = (dt.time(10, 15), dt.time(10, 16))


@pytest.fixture
def polygon() -> Any:
    market = Market(("AAPL", "MSFT"))
    market.gap("AAPL", DAY, *GAPS)
    with FakePolygon(KEY, market=market) as fake:
        yield fake


def provider_env(fake: FakePolygon, key: str = KEY) -> dict[str, str]:
    return {"TICKRUN_POLYGON_API_KEY": key, "TICKRUN_POLYGON_BASE_URL": fake.url,
            "TICKRUN_MARKET_DATA_FETCH_DEADLINE_SECONDS": "20"}


def provider_settings(fake: FakePolygon) -> MarketDataSettings:
    return MarketDataSettings(polygon_api_key=SecretStr(KEY), polygon_base_url=fake.url)


def unlabelled(body: dict[str, Any]) -> dict[str, Any]:
    """A run body that names no data source: the platform must find one."""
    return {k: v for k, v in body.items() if k != "data"}


def trades(c: httpx.Client, run_id: int) -> list[tuple[Any, ...]]:
    return [(t["step"], t["side"], t["quantity"], t["price"], t["filled_at"])
            for t in c.get(f"/v1/runs/{run_id}/trades").raise_for_status().json()]


def test_a_run_without_data_trades_the_real_session_and_a_second_run_replays_it(
        backend: Backend, polygon: FakePolygon) -> None:
    with running_api(backend, runner_env=provider_env(polygon),
                     market_data=provider_settings(polygon)) as api, api.client() as c:
        model = create_model(c)
        first = create(c, unlabelled(intraday(model, date=DAY.isoformat())))
        assert first["spec"]["data"] == "polygon"
        done = wait_status(c, first["id"], {"completed", "failed"})
        assert done["status"] == "completed", done
        assert done["result"]["data"] == {"source": "polygon", "synthetic": False,
                                          "bars": 390, "bars_filled": len(GAPS)}
        assert done["status_reason"] is None
        fetched = polygon.request_count
        assert fetched >= 1 and all(r.authorized for r in polygon.requests)

        # The trades were priced from the provider's bars: a fill at `filled_at` got
        # that minute's open (next_open), split-adjusted as the fake serves it.
        made = trades(c, first["id"])
        assert made, "the SMA baseline traded nothing on the session"
        checked = 0
        for _, _, _, price, filled_at in made:
            at = None if filled_at is None else dt.datetime.fromisoformat(filled_at)
            if at is None or at.astimezone(NEW_YORK).time() in GAPS:
                continue  # a refusal, or a minute without trades (the last close)
            assert Decimal(price) == polygon.market.minute_bar("AAPL", at).open
            checked += 1
        assert checked
        logs = [e[2]["data"] for e in sse_events(c, first["id"]) if e[1] == "log"]
        assert any(d.get("phase") == "fetching_data" and d["days_total"] == 1 for d in logs)

        second = create(c, unlabelled(intraday(model, date=DAY.isoformat())))
        again = wait_status(c, second["id"], {"completed", "failed"})
        assert again["status"] == "completed", again
        assert polygon.request_count == fetched, "the cached session was fetched again"
        assert trades(c, second["id"]) == made
        assert again["result"]["data"] == done["result"]["data"]


def test_a_half_day_is_210_minutes_of_real_bars(backend: Backend, polygon: FakePolygon
                                                 ) -> None:
    with running_api(backend, runner_env=provider_env(polygon),
                     market_data=provider_settings(polygon)) as api, api.client() as c:
        run = create(c, intraday(create_model(c), date=HALF_DAY.isoformat(), data="polygon"))
        assert run["progress"]["total"] == 210
        done = wait_status(c, run["id"], {"completed", "failed"})
        assert done["status"] == "completed", done
        assert done["result"]["data"]["bars"] == 210 and done["result"]["steps_done"] == 210


def test_two_runs_fetching_one_session_at_once_store_it_once(
        postgres_url: str, redis_url: str, redis_prefix: str, tmp_path: Any,
        polygon: FakePolygon) -> None:
    backend = Backend(postgres_url, redis_url, redis_prefix, tmp_path / "runner-logs")
    with running_api(backend, runner_env=provider_env(polygon),
                     market_data=provider_settings(polygon)) as api, api.client() as c:
        model = create_model(c)
        runs = [create(c, intraday(model, date=DAY.isoformat(), data="polygon"))
                for _ in range(2)]
        results = [wait_status(c, r["id"], {"completed", "failed"}) for r in runs]
        assert [r["status"] for r in results] == ["completed", "completed"], results
        assert trades(c, runs[0]["id"]) == trades(c, runs[1]["id"])
    store = open_store(postgres_url, pool_size=1)
    try:
        [series] = store.cache_summary(source="polygon", symbol="AAPL")
        assert (series.days, series.bars) == (1, 390 - len(GAPS))
    finally:
        store.close()


def test_an_unknown_symbol_fails_the_run_with_a_reason_a_person_reads(
        backend: Backend, polygon: FakePolygon) -> None:
    with running_api(backend, runner_env=provider_env(polygon),
                     market_data=provider_settings(polygon)) as api, api.client() as c:
        run = create(c, intraday(create_model(c), date=DAY.isoformat(), symbols=["XYZQ"],
                                 data="polygon"))
        failed = wait_status(c, run["id"], {"completed", "failed"})
        assert failed["status"] == "failed"
        assert failed["status_reason"].startswith("no bars for XYZQ on 2025-06-02 from polygon")
        assert failed["attempts"] == 1 and failed["progress"]["step"] == 0


def test_a_refused_key_fails_at_once_with_exit_do_not_retry_and_no_key_in_sight(
        runner_env: dict[str, str], database_url: str, polygon: FakePolygon) -> None:
    store = open_store(database_url, pool_size=1)
    try:
        run = make_run(store, intraday_spec(DAY, data="polygon"))
        wrong = "pk-wrong-key-1234"
        runner = start_runner(run.id, runner_env, **provider_env(polygon, key=wrong))
        out, err = runner.communicate(timeout=60)
        assert runner.returncode == EXIT_NO_RETRY, err
        failed = store.get_run(run.id)
        assert failed.status.value == "failed" and failed.steps_done == 0
        assert "TICKRUN_POLYGON_API_KEY" in (failed.status_reason or "")
        assert wrong not in out + err + (failed.status_reason or "")
        assert polygon.request_count == 1  # refused once, not retried
    finally:
        store.close()


def test_without_a_provider_or_cached_bars_the_run_is_refused_and_nothing_stored(
        backend: Backend) -> None:
    with running_api(backend, market_data=MarketDataSettings(_env_file=None)) as api, \
            api.client() as c:
        model = create_model(c)
        r = c.post("/v1/runs", json=unlabelled(intraday(model, date=DAY.isoformat())))
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        detail = r.json()["detail"]
        assert "no market data for AAPL on 2025-06-02" in detail
        assert "TICKRUN_POLYGON_API_KEY" in detail and '"data": "synthetic"' in detail
        assert c.get("/v1/runs").json()["items"] == []
        # Asked for explicitly, synthetic bars are played and labelled as such.
        run = create(c, intraday(model, date=DAY.isoformat(), data="synthetic"))
        done = wait_status(c, run["id"], {"completed", "failed"})
        assert done["result"]["data"]["synthetic"] is True


def test_status_says_a_slow_fetch_is_fetching(backend: Backend) -> None:
    market = Market(("SPY",))
    with FakePolygon(KEY, market=market) as fake:
        fake.fail_next(2, 429, retry_after=2)  # ~4 s of waiting on the provider
        seen: list[str] = []
        with running_api(backend, runner_env=provider_env(fake),
                         market_data=provider_settings(fake)) as api, api.client() as c:
            run = create(c, intraday(create_model(c), date=DAY.isoformat(), symbols=["SPY"],
                                     data="polygon"))
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    reason = c.get(f"/v1/runs/{run['id']}").json()["status_reason"]
                    if reason:
                        seen.append(reason)
                    stop.wait(0.1)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            done = wait_status(c, run["id"], {"completed", "failed"})
            stop.set()
            watcher.join(5)
        assert done["status"] == "completed", done
        assert [r.status for r in fake.requests][:3] == [429, 429, 200]
        # The run said what it waited for, and the wait honoured Retry-After.
        assert any(r.startswith("fetching 1m bars of SPY from polygon") for r in seen), seen
        gaps = [b.time - a.time for a, b in zip(fake.requests, fake.requests[1:], strict=False)]
        assert gaps[0] >= 1.9 and gaps[1] >= 1.9


def test_alpaca_serves_a_run_through_its_own_client(backend: Backend) -> None:
    market = Market(("MSFT",))
    with FakeAlpaca("key-id", "secret-key", market=market, page_size=100) as fake:
        env = {"TICKRUN_ALPACA_API_KEY_ID": "key-id", "TICKRUN_ALPACA_API_SECRET_KEY":
               "secret-key", "TICKRUN_ALPACA_DATA_URL": fake.url}
        settings = MarketDataSettings(alpaca_api_key_id=SecretStr("key-id"),
                                      alpaca_api_secret_key=SecretStr("secret-key"),
                                      alpaca_data_url=fake.url)
        with running_api(backend, runner_env=env, market_data=settings) as api, \
                api.client() as c:
            run = create(c, unlabelled(intraday(create_model(c), date=DAY.isoformat(),
                                                symbols=["MSFT"])))
            assert run["spec"]["data"] == "alpaca"
            done = wait_status(c, run["id"], {"completed", "failed"})
            decisions = c.get(f"/v1/runs/{run['id']}/decisions").json()
        assert done["status"] == "completed", done
        assert done["result"]["data"]["source"] == "alpaca" and len(decisions) == 390
        # 960 bars with extended hours, 100 a page: every page followed by token.
        pages = [r for r in fake.requests if r.path == "/v2/stocks/bars"]
        assert len(pages) == 10 and "page_token" in pages[-1].params
        assert {r.params["feed"] for r in pages} == {"iex"}
