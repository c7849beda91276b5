"""/v1/data through real HTTP, on PostgreSQL and on SQLite: the bar cache listing, and
fetches into it (admin only) from a local server speaking Massive/Polygon's REST API."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from api.routes.data import plan_fetch
from core.errors import InvalidSpec
from core.marketdata.providers import Interval
from core.marketdata.settings import MarketDataSettings
from tests.apiserver import ApiServer, Backend, running_api, wait_for
from tests.fakes.polygon_server import FakePolygon

pytestmark = [
    pytest.mark.timeout(120),
    # alpaca-py (imported by the provider factory) imports websockets.legacy, deprecated.
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
]

DEV_TOKEN = "operator-token-for-the-data-tests"
PROBLEM = "application/problem+json"
NO_PROVIDER = MarketDataSettings(polygon_api_key=None, alpaca_api_key_id=None,
                                 alpaca_api_secret_key=None, market_data_provider=None)


@contextmanager
def data_api(backend: Backend, market_data: MarketDataSettings = NO_PROVIDER
             ) -> Iterator[ApiServer]:
    """The API with the dev token and user-ops as operators, and no reconciler (no runs
    here)."""
    with running_api(backend, reconcile=False, market_data=market_data, auth_mode="dev",
                     dev_token=SecretStr(DEV_TOKEN), operator_user_ids=["user-ops"]) as api:
        yield api


def operator(api: ApiServer) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=60,
                        headers={"Authorization": f"Bearer {DEV_TOKEN}"})


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    return body


def fetch_body(**kw: Any) -> dict[str, Any]:
    return {"symbol": "AAPL", "start": "2025-03-03", "end": "2025-03-07", "interval": "1m",
            **kw}


def test_an_empty_cache_lists_nothing_and_bad_filters_are_422(backend: Backend) -> None:
    with data_api(backend) as api, api.client() as c:
        r = c.get("/v1/data/bars")
        assert r.status_code == 200 and r.json() == {"items": []}
        assert c.get("/v1/data/bars", params={"source": "polygon", "symbol": "aapl"}
                     ).json() == {"items": []}
        body = problem(c.get("/v1/data/bars", params={"source": "yahoo"}), 422)
        assert body["errors"][0]["loc"] == ["query", "source"]
        body = problem(c.get("/v1/data/bars", params={"symbol": "NOT A TICKER"}), 422)
        assert body["errors"][0]["loc"] == ["query", "symbol"]
        problem(httpx.get(f"{api.url}/v1/data/bars"), 401)


def test_fetching_is_for_operators_only(backend: Backend) -> None:
    with data_api(backend) as api, api.client() as user, operator(api) as op:
        body = problem(user.post("/v1/data/fetches", json=fetch_body()), 403)
        assert "tickrun data fetch" in body["detail"]
        problem(httpx.post(f"{api.url}/v1/data/fetches", json=fetch_body()), 401)
        # The operators get past the check (and meet the missing provider).
        problem(op.post("/v1/data/fetches", json=fetch_body()), 422)
        with api.client("user-ops") as named:
            problem(named.post("/v1/data/fetches", json=fetch_body()), 422)


@pytest.mark.parametrize(("changes", "says"), [
    ({"end": "2999-01-04"}, "is in the future"),
    ({"start": "2025-03-07", "end": "2025-03-03"}, "is after end"),
    ({"start": "2025-03-08", "end": "2025-03-09"}, "no trading session"),
    ({"start": "2025-01-02", "end": "2025-03-07"}, "at most 31 sessions of minute bars"),
    ({"start": "1990-01-02", "end": "2025-03-07", "interval": "1d"},
     "at most 30 years of daily bars"),
    ({"start": "1980-01-02", "end": "1980-03-07", "interval": "1d"},
     "outside the exchange calendar"),
    ({}, "TICKRUN_POLYGON_API_KEY"),
    ({"source": "alpaca"}, "TICKRUN_ALPACA_API_KEY_ID"),
])
def test_fetches_that_cannot_be_served_are_422(sqlite_url: str, tmp_path: Any,
                                               changes: dict[str, Any], says: str) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    with data_api(backend) as api, operator(api) as op:
        body = problem(op.post("/v1/data/fetches", json=fetch_body(**changes)), 422)
        assert says in body["detail"], body


@pytest.mark.parametrize("changes", [
    {"interval": "5m"}, {"source": "yahoo"}, {"symbol": "not a ticker"}, {"symbol": "aapl"},
    {"start": 20250303}, {"start": "03/03/2025"}, {"extra": 1}])
def test_bodies_that_do_not_validate_are_422_with_errors(
        sqlite_url: str, tmp_path: Any, changes: dict[str, Any]) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    with data_api(backend) as api, operator(api) as op:
        body = problem(op.post("/v1/data/fetches", json=fetch_body(**changes)), 422)
        assert body["errors"], body


def test_openapi_documents_the_answers(sqlite_url: str, tmp_path: Any) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    with data_api(backend) as api:
        paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    fetches = paths["/v1/data/fetches"]["post"]["responses"]
    assert {"200", "401", "403", "422", "502", "503"} <= set(fetches)
    for status in ("403", "422", "502", "503"):
        assert PROBLEM in fetches[status]["content"]
    assert set(paths["/v1/data/bars"]["get"]["responses"]) >= {"200", "401", "422"}


# -- fetches from the fake Massive/Polygon server -------------------------------------------
KEY = "polygon-test-key-1234"


@pytest.fixture
def polygon() -> Iterator[FakePolygon]:
    with FakePolygon(KEY) as fake:
        yield fake


def polygon_settings(fake: FakePolygon, key: str = KEY, **kw: Any) -> MarketDataSettings:
    return MarketDataSettings(polygon_api_key=SecretStr(key), polygon_base_url=fake.url,
                              alpaca_api_key_id=None, alpaca_api_secret_key=None,
                              market_data_provider=None, **kw)


def test_a_fetch_fills_the_cache_and_a_second_asks_the_provider_nothing(
        backend: Backend, polygon: FakePolygon) -> None:
    with data_api(backend, polygon_settings(polygon)) as api, operator(api) as op, \
            api.client() as user:
        r = op.post("/v1/data/fetches", json=fetch_body())
        assert r.status_code == 200, r.text
        assert r.json() == {"source": "polygon", "symbol": "AAPL", "interval": "1m",
                            "days": 5, "days_fetched": 5, "bars": 5 * 390}
        asked = polygon.request_count
        assert asked >= 1 and all(q.status == 200 for q in polygon.requests)

        again = op.post("/v1/data/fetches", json=fetch_body(source="polygon"))
        assert again.status_code == 200, again.text
        assert again.json()["days_fetched"] == 0 and again.json()["bars"] == 5 * 390
        assert polygon.request_count == asked  # served by the cache

        # A wider range fetches only the days it adds (2025-03-10 and 11).
        wider = op.post("/v1/data/fetches", json=fetch_body(end="2025-03-11")).json()
        assert (wider["days"], wider["days_fetched"], wider["bars"]) == (7, 2, 7 * 390)
        daily = op.post("/v1/data/fetches", json=fetch_body(
            symbol="MSFT", start="2024-01-02", end="2024-12-31", interval="1d")).json()
        assert (daily["symbol"], daily["days"], daily["bars"]) == ("MSFT", 252, 252)

        listed = user.get("/v1/data/bars").json()["items"]  # anyone may read it
        rows = [(s["source"], s["symbol"], s["interval"], s["first_day"], s["last_day"],
                 s["days"], s["bars"]) for s in listed]
        assert rows == [("polygon", "AAPL", "1m", "2025-03-03", "2025-03-11", 7, 2730),
                        ("polygon", "MSFT", "1d", "2024-01-02", "2024-12-31", 252, 252)]
        assert user.get("/v1/data/bars", params={"symbol": "msft"}).json()["items"] == \
            listed[1:]
        assert user.get("/v1/data/bars", params={"source": "alpaca"}).json() == {"items": []}


@pytest.mark.parametrize(("key", "entitled", "says"), [
    ("wrong-key-5678", True, "Unknown API Key"),
    (KEY, False, "not entitled"),
])
def test_a_refusal_is_a_readable_502_and_changes_nothing(
        sqlite_url: str, tmp_path: Any, key: str, entitled: bool, says: str) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    with FakePolygon(KEY, entitled=entitled) as fake, \
            data_api(backend, polygon_settings(fake, key)) as api, operator(api) as op:
        body = problem(op.post("/v1/data/fetches", json=fetch_body()), 502)
        assert says in body["detail"] and "TICKRUN_POLYGON_API_KEY" in body["detail"]
        assert key not in body["detail"]
        assert fake.request_count == 1  # a refusal is not retried
        assert op.get("/v1/data/bars").json() == {"items": []}


def test_a_symbol_without_bars_is_422(sqlite_url: str, tmp_path: Any,
                                      polygon: FakePolygon) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    with data_api(backend, polygon_settings(polygon)) as api, operator(api) as op:
        body = problem(op.post("/v1/data/fetches", json=fetch_body(symbol="ZZZZ")), 422)
        assert "no bars for ZZZZ" in body["detail"]


def test_a_provider_that_does_not_answer_is_503_with_retry_after(
        sqlite_url: str, tmp_path: Any, polygon: FakePolygon) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    polygon.fail_next(1000, 503)
    settings = polygon_settings(polygon, market_data_fetch_deadline_seconds=2.0)
    with data_api(backend, settings) as api, operator(api) as op:
        r = op.post("/v1/data/fetches", json=fetch_body())
        body = problem(r, 503)
        assert int(r.headers["Retry-After"]) >= 1 and "503" in body["detail"]
        assert op.get("/v1/data/bars").json() == {"items": []}


def test_the_api_is_alive_while_a_slow_fetch_holds_its_request_threads(
        sqlite_url: str, tmp_path: Any, polygon: FakePolygon) -> None:
    """A provider that keeps failing holds a fetch (a synchronous route) until its
    deadline; with the request threads all taken, the synchronous routes wait, but the
    liveness probe answers at once: a kubelet never restarts a busy API."""
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    polygon.fail_next(1000, 503)
    settings = polygon_settings(polygon, market_data_fetch_deadline_seconds=4.0)
    with running_api(backend, reconcile=False, market_data=settings, auth_mode="dev",
                     dev_token=SecretStr(DEV_TOKEN), operator_user_ids=["user-ops"],
                     request_threads=1) as api, operator(api) as op:
        fetching = threading.Thread(target=op.post, args=("/v1/data/fetches",),
                                    kwargs={"json": fetch_body()})
        fetching.start()
        wait_for(lambda: polygon.requests, timeout=10, interval=0.02)  # the thread is held
        began = time.monotonic()
        assert op.get("/healthz").json() == {"status": "ok"}
        alive_s = time.monotonic() - began
        began = time.monotonic()
        assert op.get("/v1/models").status_code == 200  # waits for the request thread
        waited_s = time.monotonic() - began
        fetching.join(30)
    assert alive_s < 0.5 and waited_s > 1.0, (alive_s, waited_s)


def test_a_blank_key_is_not_a_configured_provider(sqlite_url: str, tmp_path: Any) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    blank = MarketDataSettings(polygon_api_key=SecretStr(" "), alpaca_api_key_id=None,
                               alpaca_api_secret_key=None)
    with data_api(backend, blank) as api, operator(api) as op:
        body = problem(op.post("/v1/data/fetches", json=fetch_body()), 422)
        assert "no market data provider is configured: set TICKRUN_POLYGON_API_KEY" in \
            body["detail"]


def test_today_is_fetched_only_after_its_close() -> None:
    """A session still trading would be cached incomplete, and a cached day is never
    fetched again."""
    new_york = ZoneInfo("America/New_York")
    day = dt.date(2025, 3, 3)
    during = dt.datetime(2025, 3, 3, 15, 59, tzinfo=new_york)
    with pytest.raises(InvalidSpec, match="has not closed yet"):
        plan_fetch("AAPL", day, day, Interval.MINUTE, None, NO_PROVIDER, now=during)
    with pytest.raises(InvalidSpec, match="has not closed yet"):
        plan_fetch("AAPL", dt.date(2025, 2, 3), day, Interval.DAY, "polygon",
                   MarketDataSettings(polygon_api_key=SecretStr("k")), now=during)
    after = dt.datetime(2025, 3, 3, 16, 0, tzinfo=new_york)
    plan = plan_fetch("aapl", day, day, Interval.MINUTE, "polygon",
                      MarketDataSettings(polygon_api_key=SecretStr("k")), now=after)
    assert (plan.symbol, plan.days, plan.source) == ("AAPL", [day], "polygon")
    with pytest.raises(InvalidSpec, match="in the future"):
        plan_fetch("AAPL", day, dt.date(2025, 3, 4), Interval.DAY, None, NO_PROVIDER,
                   now=after)


# -- research: news, filings, corporate actions ---------------------------------------------
def test_a_fetch_with_research_fills_the_research_cache_once(
        backend: Backend, polygon: FakePolygon) -> None:
    research = polygon.market.research
    research.add_news("n1", dt.datetime(2025, 3, 4, 14, 0, tzinfo=dt.UTC), ["AAPL"], "Apple")
    research.add_news("n2", dt.datetime(2025, 3, 6, 14, 0, tzinfo=dt.UTC), ["AAPL"], "Again")
    research.add_financials("AAPL", 2025, "Q1", dt.date(2024, 12, 28), dt.date(2025, 1, 31),
                            None, {"income_statement": {"revenues": "124300000000"}})
    research.add_dividend("AAPL", dt.date(2025, 2, 10), "0.25",
                          declaration_date=dt.date(2025, 1, 30))
    body = fetch_body(interval="1d", research=["news", "filings", "actions"])
    with data_api(backend, polygon_settings(polygon)) as api, operator(api) as op, \
            api.client() as user:
        r = op.post("/v1/data/fetches", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["days_fetched"], answer["bars"]) == (5, 5)
        assert answer["research"] == [
            {"kind": "news", "first": "2025-03-03", "last": "2025-03-07", "days": 5,
             "days_fetched": 5, "items_fetched": 2},
            {"kind": "filings", "first": "2024-03-03", "last": "2025-03-07", "days": 370,
             "days_fetched": 370, "items_fetched": 1},
            {"kind": "actions", "first": "2024-03-03", "last": "2025-06-05", "days": 460,
             "days_fetched": 460, "items_fetched": 1}]
        asked = polygon.request_count
        again = op.post("/v1/data/fetches", json=body).json()
        assert [(k["days_fetched"], k["items_fetched"]) for k in again["research"]] == \
            [(0, 0)] * 3
        assert polygon.request_count == asked  # served by the caches
        # Research is not asked unless named.
        assert "research" not in op.post("/v1/data/fetches", json=fetch_body(
            interval="1d")).json()

        listed = user.get("/v1/data/research", params={"symbol": "aapl"}).json()["items"]
        assert [(s["source"], s["kind"], s["symbol"], s["first_day"], s["last_day"],
                 s["days"], s["items"]) for s in listed] == [
            ("polygon", "actions", "AAPL", "2024-03-03", "2025-06-05", 460, 1),
            ("polygon", "filings", "AAPL", "2024-03-03", "2025-03-07", 370, 1),
            ("polygon", "news", "AAPL", "2025-03-03", "2025-03-07", 5, 2)]
        assert user.get("/v1/data/research", params={"source": "alpaca"}).json() == \
            {"items": []}
        problem(user.get("/v1/data/research", params={"symbol": "NOT A TICKER"}), 422)


def test_research_a_provider_does_not_serve_or_does_not_know_is_422(
        sqlite_url: str, tmp_path: Any) -> None:
    backend = Backend(sqlite_url, None, "x", tmp_path / "logs")
    alpaca = MarketDataSettings(polygon_api_key=None, alpaca_api_key_id=SecretStr("id"),
                                alpaca_api_secret_key=SecretStr("secret"),
                                market_data_provider=None)
    with data_api(backend, alpaca) as api, operator(api) as op:
        body = problem(op.post("/v1/data/fetches", json=fetch_body(
            research=["news", "filings"])), 422)
        assert "alpaca serves no filings (only news)" in body["detail"]
        body = problem(op.post("/v1/data/fetches", json=fetch_body(research=["weather"])),
                       422)
        assert body["errors"][0]["loc"][:2] == ["body", "research"]
        paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    assert set(paths["/v1/data/research"]["get"]["responses"]) >= {"200", "401", "422"}
