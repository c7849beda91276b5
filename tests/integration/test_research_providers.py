"""The research providers through their official clients (massive, alpaca-py) against the
local fakes of the providers' REST APIs: no network, no database.

The fakes' `Research` is the truth each test sets up; the fakes record every request,
so paging, cursors and retries are asserted, not assumed. The last tests hold the
fakes' bodies against the official clients' own models.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from massive.rest.models import Dividend, Split, StockFinancial, TickerNews
from pydantic import SecretStr

from core.errors import ProviderRefused, ProviderUnavailable
from core.marketdata.settings import MarketDataSettings
from core.research.items import EDGAR_CUTOFF, ActionKind, Statement
from core.research.providers.alpaca import AlpacaResearch
from core.research.providers.base import ResearchProvider
from core.research.providers.factory import build_research_provider
from core.research.providers.polygon import PolygonResearch, filing_of
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.polygon_server import NEW_YORK, FakePolygon, Research

POLYGON_KEY = "pk_fake_research_5e1d4f607f3a9c2b"
ALPACA_KEY_ID = "AKFAKERESEARCH01234"
ALPACA_SECRET = "sk_fake_research_9d8c7b6a5f4e3d2c"
WRONG_KEY = "wrong_research_0f1e2d3c4b5a"
SECRETS = (POLYGON_KEY, ALPACA_KEY_ID, ALPACA_SECRET, WRONG_KEY)
UTC = dt.UTC
JUNE_2, JUNE_3, JUNE_4 = dt.date(2025, 6, 2), dt.date(2025, 6, 3), dt.date(2025, 6, 4)


def ny(*parts: int) -> dt.datetime:
    """A New York wall-clock time, in UTC."""
    return dt.datetime(*parts, tzinfo=NEW_YORK).astimezone(UTC)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), NEW_YORK).astimezone(UTC)


def no_secret_in(exc: BaseException) -> bool:
    text = "".join(traceback.format_exception(exc))
    return not any(secret in text for secret in SECRETS)


def gaps(fake: FakePolygon | FakeAlpaca) -> list[float]:
    times = [r.time for r in fake.requests]
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.fixture
def polygon() -> Iterator[FakePolygon]:
    with FakePolygon(POLYGON_KEY) as fake:
        yield fake


@pytest.fixture
def alpaca() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(ALPACA_KEY_ID, ALPACA_SECRET) as fake:
        yield fake


def polygon_research(fake: FakePolygon, *, key: str = POLYGON_KEY,
                     deadline: float = 10.0) -> PolygonResearch:
    return PolygonResearch(SecretStr(key), fake.url, deadline)


def alpaca_research(fake: FakeAlpaca, *, secret: str = ALPACA_SECRET,
                    deadline: float = 10.0) -> AlpacaResearch:
    return AlpacaResearch(SecretStr(ALPACA_KEY_ID), SecretStr(secret), fake.url, deadline)


# -- Polygon: news ---------------------------------------------------------------------


def test_polygon_news_reads_every_page_oldest_first(polygon: FakePolygon) -> None:
    polygon.page_size = 3
    research = polygon.market.research
    for n in range(7):  # added newest first: the order comes from the API's sort
        research.add_news(f"a{n}", ny(2025, 6, 3, 15, 6 - n), ["AAPL", "MSFT"],
                          f"Apple headline {n}", f"summary {n}", "The Motley Fool",
                          f"https://www.fool.com/{n}")
    research.add_news("msft-only", ny(2025, 6, 3, 12, 0), ["MSFT"], "Microsoft only")

    items = polygon_research(polygon).news("AAPL", JUNE_2, JUNE_3)

    assert [i.provider_id for i in items] == [f"a{n}" for n in range(6, -1, -1)]
    first = items[0]
    assert (first.source, first.published_at, first.tickers, first.title, first.summary,
            first.publisher, first.url) == (
        "polygon", dt.datetime(2025, 6, 3, 19, 0, tzinfo=UTC), ("AAPL", "MSFT"),
        "Apple headline 6", "summary 6", "The Motley Fool", "https://www.fool.com/6")
    sent = polygon.requests
    assert [r.status for r in sent] == [200, 200, 200]  # 3 + 3 + 1
    assert sent[0].path == "/v2/reference/news"
    assert sent[0].params == {"ticker": "AAPL", "published_utc.gte": "2025-06-02T04:00:00Z",
                              "published_utc.lt": "2025-06-04T04:00:00Z",
                              "sort": "published_utc", "order": "asc", "limit": "1000"}
    assert all(set(r.params) == {"cursor"} and r.path == sent[0].path for r in sent[1:])


def test_polygon_news_window_is_whole_new_york_days(polygon: FakePolygon) -> None:
    research = polygon.market.research
    research.add_news("first-midnight", ny(2025, 6, 2, 0, 0), ["AAPL"], "in: 00:00 June 2")
    research.add_news("last-second", ny(2025, 6, 3, 23, 59, 59), ["AAPL"], "in: the end")
    research.add_news("day-before", ny(2025, 6, 1, 23, 59, 59), ["AAPL"], "out: June 1")
    research.add_news("after-last", ny(2025, 6, 4, 0, 0), ["AAPL"], "out: 00:00 June 4")

    items = polygon_research(polygon).news("AAPL", JUNE_2, JUNE_3)

    assert [(i.provider_id, i.published_at) for i in items] == [
        ("first-midnight", dt.datetime(2025, 6, 2, 4, 0, tzinfo=UTC)),
        ("last-second", dt.datetime(2025, 6, 4, 3, 59, 59, tzinfo=UTC))]


def test_polygon_news_without_a_usable_date_comes_through_undated(
        polygon: FakePolygon) -> None:
    research = polygon.market.research
    research.add_news("dated", ny(2025, 6, 2, 10, 0), ["AAPL"], "dated")
    # indexed inside the window, but the article's own field is missing or garbled
    research.add_news("no-date", None, ["AAPL"], "no date", indexed_at=ny(2025, 6, 2, 9, 0))
    research.add_news("garbled", "Monday morning", ["AAPL"], "garbled",
                      indexed_at=ny(2025, 6, 2, 11, 0))

    items = polygon_research(polygon).news("AAPL", JUNE_2, JUNE_2)

    assert [(i.provider_id, i.published_at) for i in items] == [
        ("dated", dt.datetime(2025, 6, 2, 14, 0, tzinfo=UTC)), ("garbled", None),
        ("no-date", None)]
    assert all(i.known_at is None for i in items[1:])


def test_polygon_news_of_a_symbol_without_any_is_empty(polygon: FakePolygon) -> None:
    assert polygon_research(polygon).news("ZZZZ", JUNE_2, JUNE_4) == []
    assert [r.status for r in polygon.requests] == [200]


# -- Polygon: filings ------------------------------------------------------------------

TEN_K = "https://api.polygon.io/v1/reference/sec/filings/0000320193-25-000008"
INCOME = {"revenues": 124_300_000_000, "net_income_loss": 36_330_000_000,
          "diluted_earnings_per_share": Decimal("2.40")}
# a concept massive's typed model has no attribute for: the raw answer keeps it
CASH_FLOW = {"net_cash_flow": -5_000_000_000,
             "payments_for_repurchase_of_common_stock": 23_606_000_000}


def _filings_truth(research: Research) -> None:
    """A calendar-year company; the window is 2025-01-01..2025-03-31."""
    # FY 2024: the year ended before the window, its 10-K filed (and accepted) inside it
    research.add_financials("AAPL", 2024, "FY", dt.date(2024, 12, 31), dt.date(2025, 2, 14),
                            ny(2025, 2, 14, 16, 5, 12),
                            {"income_statement": INCOME, "cash_flow_statement": CASH_FLOW,
                             "balance_sheet": {"assets": 344_085_000_000}},
                            start_date=dt.date(2024, 1, 1), source_filing_url=TEN_K)
    # the same 10-K's fourth quarter
    research.add_financials("AAPL", 2024, "Q4", dt.date(2024, 12, 31), dt.date(2025, 2, 14),
                            ny(2025, 2, 14, 16, 5, 12),
                            {"income_statement": {"revenues": 32_000_000_000}},
                            source_filing_url=TEN_K)
    # the trailing twelve months: no filing of its own
    research.add_financials("AAPL", 2024, "TTM", dt.date(2024, 12, 31), dt.date(2025, 2, 14),
                            None, {"income_statement": INCOME})
    # an amended 10-K, without an acceptance time
    research.add_financials("AAPL", 2024, "FY", dt.date(2024, 12, 31), dt.date(2025, 3, 10),
                            None, {"income_statement": {"revenues": 1}},
                            source_filing_url="https://example.sec/10-K-A")
    # an amended 10-Q whose acceptance time is an RFC 3339 instant
    research.add_financials("AAPL", 2024, "Q3", dt.date(2024, 9, 30), dt.date(2025, 3, 20),
                            "2025-03-20T21:40:00Z", {"income_statement": {"revenues": 2}})
    # Q1 2025: the quarter ended inside the window, its 10-Q filed after it
    research.add_financials("AAPL", 2025, "Q1", dt.date(2025, 3, 31), dt.date(2025, 5, 1),
                            ny(2025, 5, 1, 16, 30), {"income_statement": {"revenues": 3}})
    # FY 2023, filed the year before
    research.add_financials("AAPL", 2023, "FY", dt.date(2023, 12, 31), dt.date(2024, 2, 15),
                            None, {"income_statement": {"revenues": 4}})
    # another company's
    research.add_financials("MSFT", 2025, "Q2", dt.date(2024, 12, 31), dt.date(2025, 1, 29),
                            None, {"income_statement": {"revenues": 5}})


WINTER = (dt.date(2025, 1, 1), dt.date(2025, 3, 31))


def test_polygon_filings_are_chosen_by_filing_date(polygon: FakePolygon) -> None:
    _filings_truth(polygon.market.research)

    filings = polygon_research(polygon).filings("AAPL", *WINTER)

    by_period = {(f.fiscal_year, f.fiscal_period, f.filing_date): f for f in filings}
    assert sorted(by_period) == [(2024, "FY", dt.date(2025, 2, 14)),
                                 (2024, "FY", dt.date(2025, 3, 10)),
                                 (2024, "Q3", dt.date(2025, 3, 20)),
                                 (2024, "Q4", dt.date(2025, 2, 14))]
    annual = by_period[(2024, "FY", dt.date(2025, 2, 14))]
    assert (annual.source, annual.symbol, annual.form, annual.period_end, annual.url) == (
        "polygon", "AAPL", "10-K", dt.date(2024, 12, 31), TEN_K)
    assert annual.accepted_at == dt.datetime(2025, 2, 14, 21, 5, 12, tzinfo=UTC)
    assert annual.known_at == annual.accepted_at
    assert annual.figures == {
        Statement.INCOME.value: {"revenues": Decimal(124_300_000_000),
                                 "net_income_loss": Decimal(36_330_000_000),
                                 "diluted_earnings_per_share": Decimal("2.40")},
        Statement.CASH_FLOW.value: {
            "net_cash_flow": Decimal(-5_000_000_000),
            "payments_for_repurchase_of_common_stock": Decimal(23_606_000_000)},
        Statement.BALANCE_SHEET.value: {"assets": Decimal(344_085_000_000)}}
    assert all(isinstance(v, Decimal) for f in filings for items in f.figures.values()
               for v in items.values())
    fourth = by_period[(2024, "Q4", dt.date(2025, 2, 14))]
    assert fourth.form == "10-K" and fourth.url == TEN_K
    assert fourth.provider_id != annual.provider_id  # one 10-K, two reports
    amended = by_period[(2024, "FY", dt.date(2025, 3, 10))]
    assert amended.accepted_at is None
    assert amended.known_at == dt.datetime.combine(
        dt.date(2025, 3, 10), EDGAR_CUTOFF, NEW_YORK).astimezone(UTC)
    quarter = by_period[(2024, "Q3", dt.date(2025, 3, 20))]
    assert quarter.form == "10-Q"
    assert quarter.accepted_at == dt.datetime(2025, 3, 20, 21, 40, tzinfo=UTC)
    [sent] = polygon.requests
    assert sent.path == "/vX/reference/financials"
    assert sent.params == {"ticker": "AAPL", "filing_date.gte": "2025-01-01",
                           "filing_date.lte": "2025-03-31", "sort": "filing_date",
                           "order": "asc", "limit": "100"}


def test_polygon_filings_read_every_raw_page(polygon: FakePolygon) -> None:
    polygon.page_size = 2
    _filings_truth(polygon.market.research)

    filings = polygon_research(polygon).filings("AAPL", *WINTER)

    assert len(filings) == 4  # five reports filed in the window, the TTM one skipped
    sent = polygon.requests
    assert len(sent) == 3  # 2 + 2 + 1
    assert all(set(r.params) == {"cursor"} and r.path == "/vX/reference/financials"
               for r in sent[1:])


def test_a_report_that_cannot_be_dated_is_no_filing() -> None:
    report: dict[str, Any] = {"fiscal_period": "Q1", "fiscal_year": "2025",
                              "end_date": "2025-03-29", "financials": {}}
    assert filing_of(report, "AAPL") is None
    dated = filing_of({**report, "filing_date": "2025-05-02",
                       "acceptance_datetime": "not a time"}, "AAPL")
    assert dated is not None and dated.accepted_at is None  # known by the cutoff rule
    assert dated.provider_id == "AAPL|2025Q1|2025-05-02"


# -- Polygon: corporate actions --------------------------------------------------------


def test_polygon_splits_and_dividends_by_ex_date(polygon: FakePolygon) -> None:
    research = polygon.market.research
    research.add_split("AAPL", JUNE_3, 1, 4, id="E-split-in")
    research.add_split("AAPL", dt.date(2025, 7, 1), 1, 2, id="E-split-later")
    research.add_split("MSFT", JUNE_3, 1, 3, id="E-split-msft")
    research.add_dividend("AAPL", JUNE_2, "0.26", declaration_date=dt.date(2025, 5, 1),
                          record_date=JUNE_2, pay_date=dt.date(2025, 6, 12), id="E-div")
    research.add_dividend("AAPL", JUNE_4, Decimal("1.5"), dividend_type="SC",
                          frequency=0, id="E-special")
    research.add_dividend("AAPL", dt.date(2025, 5, 30), "0.25", id="E-div-before")

    actions = polygon_research(polygon).actions("AAPL", JUNE_2, JUNE_4)

    assert [(a.provider_id, a.kind, a.ex_date) for a in actions] == [
        ("E-div", ActionKind.DIVIDEND, JUNE_2), ("E-split-in", ActionKind.SPLIT, JUNE_3),
        ("E-special", ActionKind.DIVIDEND, JUNE_4)]
    dividend, split, special = actions
    assert dividend.details == {"cash_amount": "0.26", "currency": "USD",
                                "pay_date": "2025-06-12", "record_date": "2025-06-02",
                                "frequency": 4, "dividend_type": "CD"}
    assert dividend.announced_on == dt.date(2025, 5, 1)
    assert dividend.known_at == midnight(dt.date(2025, 5, 1))
    assert split.details == {"split_from": "1", "split_to": "4"}
    assert split.announced_on is None and split.known_at == midnight(JUNE_3)
    assert special.details["cash_amount"] == "1.5" and special.announced_on is None
    assert [(r.path, r.params) for r in polygon.requests] == [
        ("/v3/reference/splits", {"ticker": "AAPL", "execution_date.gte": "2025-06-02",
                                  "execution_date.lte": "2025-06-04",
                                  "sort": "execution_date", "order": "asc",
                                  "limit": "1000"}),
        ("/v3/reference/dividends", {"ticker": "AAPL", "ex_dividend_date.gte": "2025-06-02",
                                     "ex_dividend_date.lte": "2025-06-04",
                                     "sort": "ex_dividend_date", "order": "asc",
                                     "limit": "1000"})]


# -- Alpaca: news ----------------------------------------------------------------------


def test_alpaca_news_reads_every_page_with_its_fields(alpaca: FakeAlpaca) -> None:
    alpaca.page_size = 2
    research = alpaca.market.research
    for n in range(5):
        research.add_news(str(4000 + n), ny(2025, 6, 2, 9, 30 + n), ["AAPL", "NVDA"],
                          f"Headline {n}", f"Summary {n}", "benzinga",
                          f"https://www.benzinga.com/{n}", author="Jane Doe")
    research.add_news("4100", ny(2025, 6, 2, 0, 0), ["AAPL"], "at the first midnight", "")
    research.add_news("4200", ny(2025, 6, 3, 0, 0), ["AAPL"], "at the next midnight")
    research.add_news("4300", ny(2025, 6, 2, 12, 0), ["TSLA"], "another symbol")

    items = alpaca_research(alpaca).news("AAPL", JUNE_2, JUNE_2)

    assert [i.provider_id for i in items] == ["4100", "4000", "4001", "4002", "4003", "4004"]
    first, second = items[0], items[1]
    assert first.summary is None  # Alpaca's "" summary
    assert (second.source, second.published_at, second.tickers, second.title, second.summary,
            second.publisher, second.url) == (
        "alpaca", dt.datetime(2025, 6, 2, 13, 30, tzinfo=UTC), ("AAPL", "NVDA"),
        "Headline 0", "Summary 0", "benzinga", "https://www.benzinga.com/0")
    sent = alpaca.requests
    # 00:00 June 3 is inside the inclusive `end`: sent, then dropped by the provider
    assert len(sent) == 4  # 7 articles, 2 a page
    assert sent[0].path == "/v1beta1/news"
    assert sent[0].params == {"symbols": "AAPL", "start": "2025-06-02T04:00:00+00:00",
                              "end": "2025-06-03T04:00:00+00:00", "sort": "asc",
                              "include_content": "False", "limit": "50"}
    tokens = [r.params.get("page_token") for r in sent]
    assert tokens[0] is None and len(set(tokens[1:])) == 3
    assert all(r.params["limit"] == "50" for r in sent)


def test_alpaca_py_news_limit_caps_the_total_not_the_page(alpaca: FakeAlpaca) -> None:
    """Why the provider sets no NewsRequest.limit: the client stops at that many."""
    from alpaca.data.historical.news import NewsClient  # see the model test below
    from alpaca.data.requests import NewsRequest

    alpaca.page_size = 2
    for n in range(5):
        alpaca.market.research.add_news(str(n + 1), ny(2025, 6, 2, 10, n), ["AAPL"], "x")
    client = NewsClient(ALPACA_KEY_ID, ALPACA_SECRET, url_override=alpaca.url, raw_data=True)

    raw = client.get_news(NewsRequest(symbols="AAPL", start=midnight(JUNE_2),
                                      end=midnight(JUNE_3), limit=3, sort="asc"))

    assert isinstance(raw, dict) and len(raw["news"]) == 3
    assert len(alpaca_research(alpaca).news("AAPL", JUNE_2, JUNE_2)) == 5


# -- retries and refusals, both providers ----------------------------------------------


@pytest.fixture(params=["polygon", "alpaca"])
def provider_and_fake(request: pytest.FixtureRequest
                      ) -> Iterator[tuple[str, FakePolygon | FakeAlpaca]]:
    fake = FakePolygon(POLYGON_KEY) if request.param == "polygon" else \
        FakeAlpaca(ALPACA_KEY_ID, ALPACA_SECRET)
    with fake:
        fake.market.research.add_news("77", ny(2025, 6, 2, 10, 0), ["AAPL"], "one")
        yield request.param, fake


def _provider(name: str, fake: FakePolygon | FakeAlpaca, *, wrong_key: bool = False
              ) -> ResearchProvider:
    if isinstance(fake, FakePolygon):
        return polygon_research(fake, key=WRONG_KEY if wrong_key else POLYGON_KEY)
    return alpaca_research(fake, secret=WRONG_KEY if wrong_key else ALPACA_SECRET)


def test_a_429_waits_for_retry_after_then_succeeds(
        provider_and_fake: tuple[str, FakePolygon | FakeAlpaca]) -> None:
    name, fake = provider_and_fake
    fake.fail_next(1, 429, retry_after=1)

    items = _provider(name, fake).news("AAPL", JUNE_2, JUNE_2)

    assert [i.provider_id for i in items] == ["77"]
    assert [r.status for r in fake.requests] == [429, 200]
    [gap] = gaps(fake)
    assert 1.0 <= gap < 1.5  # Retry-After honoured, nothing added


def test_a_wrong_key_is_refused_without_the_key(
        provider_and_fake: tuple[str, FakePolygon | FakeAlpaca]) -> None:
    name, fake = provider_and_fake

    with pytest.raises(ProviderRefused) as raised:
        _provider(name, fake, wrong_key=True).news("AAPL", JUNE_2, JUNE_2)

    assert [r.status for r in fake.requests] == [401]
    assert no_secret_in(raised.value)
    if name == "polygon":
        assert str(raised.value) == (
            "polygon refused the request for AAPL news 2025-06-02..2025-06-02 "
            "(Unknown API Key): check TICKRUN_POLYGON_API_KEY")
    else:
        assert str(raised.value) == (
            "alpaca refused the request for AAPL news 2025-06-02..2025-06-02 "
            "(401: request is not authorized): check TICKRUN_ALPACA_API_KEY_ID and "
            "TICKRUN_ALPACA_API_SECRET_KEY")


def test_the_financials_client_retries_under_the_fetch_deadline(polygon: FakePolygon) -> None:
    """Filings go through massive's `vx` sub-client, a pool of its own: the deadline
    policy governs it too (massive's default Retry would give up after 3 retries with
    another message)."""
    polygon.fail_next(50, 429, retry_after=1)

    with pytest.raises(ProviderUnavailable) as raised:
        polygon_research(polygon, deadline=2.5).filings("AAPL", JUNE_2, JUNE_2)

    assert [(r.path, r.status) for r in polygon.requests] == [
        ("/vX/reference/financials", 429)] * 3  # at 0 s, 1 s, 2 s
    assert str(raised.value) == (
        "polygon did not answer within 2.5 s: 429 Too Many Requests "
        "(3 attempts, the next after 1 s would pass the deadline)")


def test_polygon_refuses_filings_a_plan_does_not_include(polygon: FakePolygon) -> None:
    polygon.entitled = False

    with pytest.raises(ProviderRefused) as raised:
        polygon_research(polygon).filings("AAPL", JUNE_2, JUNE_2)

    assert [r.status for r in polygon.requests] == [403]
    assert str(raised.value).startswith(
        "polygon refused the request for AAPL filings 2025-06-02..2025-06-02 "
        "(NOT_AUTHORIZED: You are not entitled to this data.")
    assert no_secret_in(raised.value)


# -- the factory -----------------------------------------------------------------------


def _settings(**values: Any) -> MarketDataSettings:
    blank: dict[str, Any] = {"polygon_api_key": None, "alpaca_api_key_id": None,
                             "alpaca_api_secret_key": None}
    return MarketDataSettings(**{**blank, **values})


def test_build_research_provider_uses_the_market_data_settings(
        polygon: FakePolygon, alpaca: FakeAlpaca) -> None:
    settings = _settings(polygon_api_key=POLYGON_KEY, polygon_base_url=polygon.url,
                         alpaca_api_key_id=ALPACA_KEY_ID, alpaca_api_secret_key=ALPACA_SECRET,
                         alpaca_data_url=alpaca.url)
    for fake in (polygon, alpaca):
        fake.market.research.add_news("9", ny(2025, 6, 2, 10, 0), ["AAPL"], "news")

    for name in ("polygon", "alpaca"):
        provider = build_research_provider(name, settings)  # type: ignore[arg-type]
        assert provider.source == name
        assert [i.provider_id for i in provider.news("AAPL", JUNE_2, JUNE_2)] == ["9"]
        assert not any(secret in repr(provider) for secret in SECRETS)
    assert build_research_provider("polygon", settings).serves == {"news", "filings",
                                                                   "actions"}
    assert build_research_provider("alpaca", settings).serves == {"news"}
    with pytest.raises(ProviderRefused, match=r"^alpaca is not configured: set "
                                              r"TICKRUN_ALPACA_API_KEY_ID$"):
        build_research_provider("alpaca", _settings(alpaca_api_secret_key=ALPACA_SECRET))
    with pytest.raises(ProviderRefused, match="unknown research provider"):
        build_research_provider("iex", settings)  # type: ignore[arg-type]


# -- the fakes' bodies, read by the official clients' models ---------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                timeout=10) as answer:
        parsed: dict[str, Any] = json.loads(answer.read())
        return parsed


def test_the_polygon_fake_speaks_what_the_massive_models_read(polygon: FakePolygon) -> None:
    research = polygon.market.research
    research.add_news("n1", ny(2025, 6, 2, 10, 0), ["AAPL"], "Title", "Description",
                      "Benzinga", "https://www.benzinga.com/n1", author="A. Writer",
                      keywords=["earnings"])
    research.add_financials("AAPL", 2025, "Q2", dt.date(2025, 3, 29), dt.date(2025, 5, 2),
                            ny(2025, 5, 1, 18, 3, 5), {"income_statement": {"revenues": 95}})
    research.add_split("AAPL", JUNE_3, 1, 4)
    research.add_dividend("AAPL", JUNE_2, "0.26", declaration_date=dt.date(2025, 5, 1))
    key = urlencode({"apiKey": POLYGON_KEY, "ticker": "AAPL"})

    [news] = _get(f"{polygon.url}/v2/reference/news?{key}")["results"]
    [report] = _get(f"{polygon.url}/vX/reference/financials?{key}")["results"]
    [split] = _get(f"{polygon.url}/v3/reference/splits?{key}")["results"]
    [dividend] = _get(f"{polygon.url}/v3/reference/dividends?{key}")["results"]

    article = TickerNews.from_dict(news)
    assert (article.id, article.published_utc, article.title, article.description,
            article.article_url, article.tickers, article.author, article.keywords) == (
        "n1", "2025-06-02T14:00:00Z", "Title", "Description", "https://www.benzinga.com/n1",
        ["AAPL"], "A. Writer", ["earnings"])
    assert article.publisher is not None and article.publisher.name == "Benzinga"
    financial = StockFinancial.from_dict(report)
    assert (financial.filing_date, financial.fiscal_period, financial.fiscal_year,
            financial.end_date) == ("2025-05-02", "Q2", "2025", "2025-03-29")
    assert financial.financials is not None and financial.financials.income_statement
    revenues = financial.financials.income_statement.revenues
    assert revenues is not None and (revenues.value, revenues.unit) == (95, "USD")
    assert report["acceptance_datetime"] == "20250501180305"  # the field massive drops
    assert not hasattr(financial, "acceptance_datetime")
    assert (report["timeframe"], report["tickers"]) == ("quarterly", ["AAPL"])
    parsed_split = Split.from_dict(split)
    assert (parsed_split.execution_date, parsed_split.split_from, parsed_split.split_to,
            parsed_split.ticker) == ("2025-06-03", 1, 4, "AAPL")
    parsed_dividend = Dividend.from_dict(dividend)
    assert (parsed_dividend.ex_dividend_date, parsed_dividend.cash_amount,
            parsed_dividend.declaration_date, parsed_dividend.currency) == (
        "2025-06-02", 0.26, "2025-05-01", "USD")


def test_the_alpaca_fake_speaks_what_the_alpaca_py_model_reads(alpaca: FakeAlpaca) -> None:
    # imported here, after core.research.providers.alpaca (which silences alpaca.data's
    # websockets DeprecationWarning, an error under this suite's -W error)
    from alpaca.data.models.news import NewsSet

    alpaca.market.research.add_news("24843171", ny(2025, 6, 2, 10, 0), ["AAPL"], "Headline",
                                    "Summary", "benzinga", "https://www.benzinga.com/x",
                                    author="Benzinga Newsdesk", content="<p>Body</p>")
    query = urlencode({"symbols": "AAPL", "start": "2025-06-02", "end": "2025-06-03",
                       "include_content": "true"})

    raw = _get(f"{alpaca.url}/v1beta1/news?{query}",
               {"APCA-API-KEY-ID": ALPACA_KEY_ID, "APCA-API-SECRET-KEY": ALPACA_SECRET})

    [article] = NewsSet(raw).data["news"]
    assert (article.id, article.headline, article.summary, article.source, article.url,
            article.symbols, article.author, article.content) == (
        24843171, "Headline", "Summary", "benzinga", "https://www.benzinga.com/x", ["AAPL"],
        "Benzinga Newsdesk", "<p>Body</p>")
    assert article.created_at == article.updated_at == dt.datetime(2025, 6, 2, 14, 0,
                                                                   tzinfo=UTC)
    assert raw["next_page_token"] is None


def test_the_fakes_refuse_pages_above_the_apis_maxima(polygon: FakePolygon,
                                                     alpaca: FakeAlpaca) -> None:
    too_many = [
        f"{polygon.url}/vX/reference/financials?apiKey={POLYGON_KEY}&limit=101",
        f"{polygon.url}/v2/reference/news?apiKey={POLYGON_KEY}&limit=1001",
    ]
    for url in too_many:
        with pytest.raises(urllib.error.HTTPError) as raised:
            _get(url)
        assert raised.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as raised:
        _get(f"{alpaca.url}/v1beta1/news?limit=51",
             {"APCA-API-KEY-ID": ALPACA_KEY_ID, "APCA-API-SECRET-KEY": ALPACA_SECRET})
    assert raised.value.code == 422
    assert _get(f"{polygon.url}/v3/reference/splits?apiKey={POLYGON_KEY}&limit=1000"
                )["results"] == []
