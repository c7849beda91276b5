"""The agent's research tools against a real store (PostgreSQL and SQLite): every answer
ends at the end of the bar being decided, at minute and at day resolution; undated items
never; filings by when they were filed, never by their fiscal period; answers bounded."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from core.marketdata.settings import MarketDataSettings
from core.records import Portfolio, Run
from core.research.cache import ResearchCache
from core.research.items import ActionKind, CorporateAction, Filing, NewsItem
from core.spec import DataSource
from core.store import Store
from core.store.research import ResearchKind
from runner.deciders.base import StepContext
from runner.deciders.llm_tools import build_tools
from runner.research import RunResearch, run_research
from tests.factories import daily_spec, intraday_spec, make_model, make_run

SOURCE = "polygon"
DAY = dt.date(2025, 6, 2)
OPEN = dt.datetime(2025, 6, 2, 13, 30, tzinfo=dt.UTC)  # 09:30 New York: ends 13:31:00Z
CLOSE = dt.datetime(2025, 6, 2, 20, 0, tzinfo=dt.UTC)  # 16:00 New York
DAILY_BAR = dt.datetime(2025, 6, 2, 0, 0, tzinfo=dt.UTC)  # a daily bar's time (timeline)
SECOND = dt.timedelta(seconds=1)


def news(provider_id: str, published: dt.datetime | None, *, tickers: tuple[str, ...] = ("AAPL",),
         title: str | None = None, summary: str = "A short summary.") -> NewsItem:
    return NewsItem(source=SOURCE, provider_id=provider_id, published_at=published,
                    tickers=tickers, title=title or provider_id, summary=summary,
                    publisher="Benzinga", url=f"https://example.com/{provider_id}")


def filing(provider_id: str, *, filed: dt.date, period_end: dt.date, form: str = "10-Q",
           accepted: dt.datetime | None = None) -> Filing:
    return Filing(source=SOURCE, provider_id=provider_id, symbol="AAPL", form=form,
                  fiscal_year=period_end.year, fiscal_period="FY" if form == "10-K" else "Q1",
                  period_end=period_end, filing_date=filed, accepted_at=accepted,
                  figures={"income_statement": {"revenues": Decimal("95359000000"),
                                                "net_income_loss": Decimal("24780000000")}})


def research(store: Store) -> RunResearch:
    """Answers from the cache alone (no provider): what a test planted is all there is."""
    return RunResearch(store=store, source=SOURCE, kinds=frozenset(ResearchKind),
                       cache=ResearchCache(store, SOURCE, None))


def ask(store: Store, run: Run, bar_time: dt.datetime, tool: str, **args: Any
        ) -> dict[str, Any]:
    ctx = StepContext(run=run, model=store.get_model(run.model_id), step=0, steps_total=1,
                      bar_time=bar_time, history={"AAPL": []},
                      portfolio=Portfolio(run_id=run.id, cash=Decimal(1000)),
                      recent_trades=[], broker=None,  # type: ignore[arg-type]
                      research=research(store))
    tools = {t.name: t for t in build_tools(ctx, max_lookback=10, on_trade=lambda t: None)}
    answer: dict[str, Any] = tools[tool].invoke(args)
    return answer


def titles(answer: dict[str, Any]) -> list[str]:
    return [item["title"] for item in answer["items"]]


def cached_days(last: dt.date, count: int) -> list[dt.date]:
    return [last - dt.timedelta(days=i) for i in range(count)]


@pytest.fixture
def minute_run(store: Store) -> Run:
    return make_run(store, intraday_spec(DAY, data="polygon"),
                    model=make_model(store, "user-a", "researcher"))


@pytest.fixture
def daily_run(store: Store) -> Run:
    return make_run(store, daily_spec(start=DAY, end=dt.date(2025, 6, 6), data="polygon",
                                      symbols=["AAPL"]),
                    model=make_model(store, "user-a", "daily-researcher"))


def test_news_ends_at_the_minute_bars_end_and_never_answers_undated_items(
        store: Store, minute_run: Run) -> None:
    end = OPEN + dt.timedelta(minutes=1)
    store.save_news(SOURCE, "AAPL", cached_days(DAY, 31), [
        news("at-the-end", end), news("one-second-late", end + SECOND),
        news("undated", None), news("earlier", OPEN - dt.timedelta(minutes=30)),
        news("yesterday", OPEN - dt.timedelta(hours=20)),
        news("last-week", OPEN - dt.timedelta(days=6))])
    store.save_news(SOURCE, "MSFT", cached_days(DAY, 3), [
        news("other-symbol", OPEN - dt.timedelta(minutes=5), tickers=("MSFT",))])
    answer = ask(store, minute_run, OPEN, "news", symbol="aapl", lookback_hours=24)
    assert "items" in answer, answer
    assert titles(answer) == ["at-the-end", "earlier", "yesterday"]
    assert answer["as_of"] == end.isoformat() and answer["not_listed"] == 0
    assert all(item["known_at"] == item["published_at"] for item in answer["items"])
    # The next minute's bar ends a minute later: the late item is in it.
    later = ask(store, minute_run, OPEN + dt.timedelta(minutes=1), "news", symbol="AAPL")
    assert titles(later)[0] == "one-second-late"
    assert "undated" not in titles(ask(store, minute_run, OPEN, "news", symbol="AAPL",
                                       lookback_hours=720))


def test_news_ends_at_the_sessions_close_for_a_daily_bar(store: Store, daily_run: Run) -> None:
    store.save_news(SOURCE, "AAPL", cached_days(DAY, 2), [
        news("at-the-close", CLOSE), news("after-the-close", CLOSE + SECOND),
        news("undated", None)])
    answer = ask(store, daily_run, DAILY_BAR, "news", symbol="AAPL")
    assert titles(answer) == ["at-the-close"]
    assert answer["as_of"] == CLOSE.isoformat()


def test_answers_are_bounded_and_say_what_they_left_out(store: Store, minute_run: Run) -> None:
    store.save_news(SOURCE, "AAPL", cached_days(DAY, 2), [
        news(f"item-{i:02d}", OPEN - dt.timedelta(minutes=i), summary="word " * 400)
        for i in range(30)] + [
        news("guidance-raised", OPEN - dt.timedelta(hours=2), title="Apple raises guidance"),
        news("guidance-cut", OPEN - dt.timedelta(hours=3), title="Apple cuts Guidance")])
    answer = ask(store, minute_run, OPEN, "news", symbol="AAPL")
    assert 1 <= len(answer["items"]) <= 10
    assert len(answer["items"]) + answer["not_listed"] == 32
    assert all(len(item["summary"]) <= 300 for item in answer["items"])
    assert titles(answer)[0] == "item-00"
    found = ask(store, minute_run, OPEN, "news", symbol="AAPL", query="GUIDANCE apple")
    assert titles(found) == ["Apple raises guidance", "Apple cuts Guidance"]
    assert found["not_listed"] == 0


def test_a_filing_is_answered_once_filed_never_by_its_fiscal_period(
        store: Store, daily_run: Run, minute_run: Run) -> None:
    store.save_filings(SOURCE, "AAPL", cached_days(DAY + dt.timedelta(days=6), 460), [
        # The year ended in December, but the 10-K was filed the day after the bar.
        filing("10-k-late", filed=DAY + dt.timedelta(days=1), period_end=dt.date(2024, 12, 31),
               form="10-K"),
        filing("10-q", filed=dt.date(2025, 5, 2), period_end=dt.date(2025, 3, 29)),
        # Accepted at 09:30:30 New York: in the 09:30 bar's answer, which ends 09:31.
        filing("8-k-morning", filed=DAY, period_end=dt.date(2025, 3, 29),
               accepted=OPEN + dt.timedelta(seconds=30)),
    ])
    store.save_actions(SOURCE, "AAPL", cached_days(DAY + dt.timedelta(days=95), 470), [
        CorporateAction(source=SOURCE, provider_id="div-may", symbol="AAPL",
                        kind=ActionKind.DIVIDEND, ex_date=dt.date(2025, 5, 12),
                        announced_on=dt.date(2025, 5, 1),
                        details={"cash_amount": "0.26", "currency": "USD"}),
        # Declared after the bar: unknown then, even though its ex-date is later still.
        CorporateAction(source=SOURCE, provider_id="div-aug", symbol="AAPL",
                        kind=ActionKind.DIVIDEND, ex_date=dt.date(2025, 8, 11),
                        announced_on=dt.date(2025, 7, 31), details={"cash_amount": "0.26"}),
    ])
    morning = ask(store, minute_run, OPEN, "fundamentals", symbol="AAPL")
    assert "filings" in morning, morning
    assert [f["fiscal_period"] for f in morning["filings"]] == ["Q1", "Q1"]
    assert morning["filings"][0]["known_at"] == (OPEN + dt.timedelta(seconds=30)).isoformat()
    assert morning["filings"][1]["filing_date"] == "2025-05-02"
    assert morning["filings"][1]["figures"]["income_statement"]["revenues"] == "95359000000"
    assert [a["ex_date"] for a in morning["actions"]] == ["2025-05-12"]
    # At the close of the day the 10-K is still a day away.
    close = ask(store, daily_run, DAILY_BAR, "fundamentals", symbol="AAPL")
    assert "filings" in close, close
    assert "FY" not in [f["fiscal_period"] for f in close["filings"]]
    # A filing without an acceptance time is known from 17:30 New York of its date: after
    # that day's close, so the 10-K filed on the 3rd is first answered at the 4th's close.
    filed_day = ask(store, daily_run, DAILY_BAR + dt.timedelta(days=1), "fundamentals",
                    symbol="AAPL")
    assert "10-K" not in [f["form"] for f in filed_day["filings"]]
    next_day = ask(store, daily_run, DAILY_BAR + dt.timedelta(days=2), "fundamentals",
                   symbol="AAPL")
    assert next_day["filings"][0]["form"] == "10-K"
    assert next_day["filings"][0]["known_at"] == "2025-06-03T21:30:00+00:00"


def test_a_window_neither_cached_nor_fetchable_is_an_answer_not_a_failure(
        store: Store, minute_run: Run) -> None:
    answer = ask(store, minute_run, OPEN, "news", symbol="AAPL")
    assert answer["status"] == "unavailable" and answer["reason"]
    refused = ask(store, minute_run, OPEN, "news", symbol="TSLA")
    assert refused["status"] == "rejected" and "TSLA" in refused["reason"]


def test_a_run_on_synthetic_bars_has_no_research_tools(store: Store) -> None:
    settings = MarketDataSettings()
    for data in (DataSource.SYNTHETIC, DataSource.FILES, DataSource.TABLE):
        assert run_research(data, store, settings) is None
    alpaca = run_research(DataSource.ALPACA, store, settings)
    assert alpaca is not None and alpaca.kinds == {ResearchKind.NEWS}
    run = make_run(store, intraday_spec(DAY, data="synthetic"))
    ctx = StepContext(run=run, model=store.get_model(run.model_id), step=0, steps_total=1,
                      bar_time=OPEN, history={"AAPL": []},
                      portfolio=Portfolio(run_id=run.id, cash=Decimal(1000)),
                      recent_trades=[], broker=None)  # type: ignore[arg-type]
    names = {t.name for t in build_tools(ctx, max_lookback=10, on_trade=lambda t: None)}
    assert "news" not in names and "fundamentals" not in names and "buy" in names
