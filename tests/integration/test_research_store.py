"""The research store and cache on PostgreSQL and SQLite (real servers): items stored once
per (source, id) with their first learned_at, the point-in-time line (published or
known at or before as_of, to the second, at minute and day resolution; undated never;
filings by when they were filed, never by their fiscal period), word queries, limits
and totals, the days fetched, and the cache asking the provider once per day: the real
PolygonResearch against the fake Massive/Polygon server, and a stub where a test needs
to count calls per chunk."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from core import calendar
from core.errors import NoResearchData
from core.research.cache import CHUNK_DAYS, ResearchCache, ResearchProgress, reach
from core.research.items import ActionKind, CorporateAction, Filing, NewsItem
from core.research.providers.base import ResearchProvider
from core.research.providers.polygon import PolygonResearch
from core.store import Store, open_store
from core.store.research import ResearchKind
from tests.fakes.polygon_server import FakePolygon

NY = ZoneInfo("America/New_York")
SOURCE = "polygon"
DAY = dt.date(2025, 6, 2)  # a Monday
SECOND = dt.timedelta(seconds=1)
KEY = "polygon-research-key-1234"


def news(provider_id: str, published: dt.datetime | None, *,
         tickers: tuple[str, ...] = ("AAPL",), title: str | None = None,
         summary: str | None = "A short summary.", source: str = SOURCE) -> NewsItem:
    return NewsItem(source=source, provider_id=provider_id, published_at=published,
                    tickers=tickers, title=title or provider_id, summary=summary,
                    publisher="Benzinga", url=f"https://news.example/{provider_id}")


def filing(provider_id: str, *, filed: dt.date, period_end: dt.date, form: str = "10-Q",
           accepted: dt.datetime | None = None, symbol: str = "AAPL") -> Filing:
    return Filing(source=SOURCE, provider_id=provider_id, symbol=symbol, form=form,
                  fiscal_year=period_end.year,
                  fiscal_period="FY" if form == "10-K" else "Q1", period_end=period_end,
                  filing_date=filed, accepted_at=accepted,
                  figures={"income_statement": {"revenues": Decimal("95359000000.00"),
                                                "eps": Decimal("1.5300")},
                           "balance_sheet": {"assets": Decimal("-0.000001")}},
                  url=f"https://sec.example/{provider_id}")


def ny(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NY)


def known(store: Store, as_of: dt.datetime, *, symbol: str = "AAPL", query: str | None = None,
          limit: int = 50, since: dt.datetime | None = None) -> tuple[list[str], int]:
    items, total = store.news_known(SOURCE, symbol, since=since or as_of - dt.timedelta(days=30),
                                    as_of=as_of, query=query, limit=limit)
    return [i.provider_id for i in items], total


# -- the store ----------------------------------------------------------------------------
def test_news_is_stored_once_per_source_and_id_and_keeps_its_first_learned_at(
        store: Store) -> None:
    at = ny(DAY, 8)
    first = news("n1", at, tickers=("AAPL", "MSFT"), title="Apple and Microsoft")
    assert store.save_news(SOURCE, "AAPL", [DAY], [first]) == 1
    [stored], _ = store.news_known(SOURCE, "AAPL", since=at, as_of=at)
    assert stored.learned_at is not None
    assert (stored.title, stored.tickers, stored.published_at) == \
        ("Apple and Microsoft", ("AAPL", "MSFT"), at)
    assert stored == NewsItem(**{**_fields(first), "learned_at": stored.learned_at})

    # Sent again (a later fetch, for another symbol, changed upstream): left as it was.
    again = news("n1", at, tickers=("AAPL", "MSFT"), title="Edited upstream")
    assert store.save_news(SOURCE, "MSFT", [DAY], [again, again]) == 0
    [for_msft], total = store.news_known(SOURCE, "MSFT", since=at, as_of=at)
    assert total == 1 and for_msft == stored
    # The same id from another source is another item.
    assert store.save_news("alpaca", "AAPL", [DAY], [news("n1", at, source="alpaca")]) == 1
    assert known(store, at) == (["n1"], 1)


def _fields(item: NewsItem) -> dict[str, object]:
    return {name: getattr(item, name) for name in NewsItem.__dataclass_fields__}


def test_an_item_is_filed_under_the_symbol_it_was_fetched_for(store: Store) -> None:
    at = ny(DAY, 9)
    store.save_news(SOURCE, "AAPL", [DAY], [news("untagged", at, tickers=())])
    assert known(store, at) == (["untagged"], 1)
    assert known(store, at, symbol="MSFT") == ([], 0)


@pytest.mark.parametrize("resolution", ["minute", "day"])
def test_news_published_at_as_of_is_known_one_second_later_is_not(
        store: Store, resolution: str) -> None:
    # The end of the 09:30 minute bar, or of the day's session (16:00 New York).
    as_of = (ny(DAY, 9, 31) if resolution == "minute" else calendar.session_close(DAY))
    store.save_news(SOURCE, "AAPL", [DAY], [
        news("before", as_of - SECOND), news("at", as_of), news("after", as_of + SECOND),
        news("a-microsecond-after", as_of + dt.timedelta(microseconds=1)),
        news("next-day", as_of + dt.timedelta(days=1))])
    assert known(store, as_of) == (["at", "before"], 2)
    # As of one second later, the one published then is known too; newest first.
    assert known(store, as_of + SECOND)[0] == ["after", "a-microsecond-after", "at", "before"]
    # `since` is inclusive too.
    assert known(store, as_of, since=as_of) == (["at"], 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.news_known(SOURCE, "AAPL", since=as_of, as_of=as_of.replace(tzinfo=None))


def test_an_undated_item_is_stored_and_never_answered(store: Store) -> None:
    dated = news("dated", ny(DAY, 10))
    assert store.save_news(SOURCE, "AAPL", [DAY], [news("undated", None), dated]) == 2
    wide = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    assert known(store, wide, since=dt.datetime(1900, 1, 1, tzinfo=dt.UTC)) == (["dated"], 1)
    assert known(store, wide, since=dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
                 query="undated") == ([], 0)
    # The day counts the dated item only.
    [series] = store.research_summary(symbol="AAPL")
    assert (series.kind, series.days, series.items) == (ResearchKind.NEWS, 1, 1)


def test_query_words_must_each_appear_in_the_title_or_summary_in_any_case(
        store: Store) -> None:
    at = ny(DAY, 12)
    store.save_news(SOURCE, "AAPL", [DAY], [
        news("a", at - 5 * SECOND, title="Apple beats EARNINGS estimates",
             summary="iPhone sales rose"),
        news("b", at - 4 * SECOND, title="Apple earnings preview", summary=None),
        news("c", at - 3 * SECOND, title="Supplier news", summary="Apple's iPhone demand"),
        news("d", at - 2 * SECOND, title="Margin up 50% on a_b basis", summary="Straße"),
        news("e", at - 1 * SECOND, title="Margin up 50 on aXb basis", summary="ÉLAN"),
    ])
    assert known(store, at, query="earnings") == (["b", "a"], 2)
    assert known(store, at, query="  APPLE   iphone ") == (["c", "a"], 2)  # title or summary
    assert known(store, at, query="earnings iphone") == (["a"], 1)  # every word
    assert known(store, at, query="apple iphone earnings sales") == (["a"], 1)
    assert known(store, at, query="nothing-like-it") == ([], 0)
    assert known(store, at, query="") == (["e", "d", "c", "b", "a"], 5)
    # % and _ are letters, not wildcards; beyond ASCII, any case too (both databases).
    assert known(store, at, query="50%") == (["d"], 1)
    assert known(store, at, query="a_b") == (["d"], 1)
    assert known(store, at, query="élan") == (["e"], 1)
    assert known(store, at, query="STRASSE") == (["d"], 1)


def test_limit_answers_the_newest_and_the_total_counts_them_all(store: Store) -> None:
    as_of = ny(DAY, 15)
    items = [news(f"n{i:02d}", as_of - i * dt.timedelta(minutes=7)) for i in range(25)]
    store.save_news(SOURCE, "AAPL", [DAY], items)
    assert known(store, as_of, limit=3) == (["n00", "n01", "n02"], 25)
    assert known(store, as_of, limit=0) == ([], 25)
    ids, total = known(store, as_of - 10 * dt.timedelta(minutes=7), limit=100)
    assert ids[0] == "n10" and len(ids) == total == 15


def test_a_filing_is_known_from_its_acceptance_never_from_its_period(store: Store) -> None:
    as_of = calendar.session_close(DAY)  # 2025-06-02 16:00 New York
    annual = filing("10-K-late", form="10-K", period_end=dt.date(2025, 3, 31),
                    filed=dt.date(2025, 6, 3))  # its year ended before as_of: filed after
    quarter = filing("10-Q", period_end=dt.date(2025, 3, 29), filed=dt.date(2025, 5, 2),
                     accepted=ny(dt.date(2025, 5, 1), 18, 3))  # after EDGAR's cutoff
    same_day = filing("8-K-ish", period_end=dt.date(2025, 3, 29), filed=DAY)  # 17:30 cutoff
    accepted_at_as_of = filing("at", period_end=dt.date(2025, 3, 29), filed=DAY,
                               accepted=as_of)
    accepted_after = filing("after", period_end=dt.date(2025, 3, 29), filed=DAY,
                            accepted=as_of + SECOND)
    assert store.save_filings(SOURCE, "AAPL", [dt.date(2025, 5, 2), DAY, dt.date(2025, 6, 3)],
                              [annual, quarter, same_day, accepted_at_as_of,
                               accepted_after]) == 5
    answered = store.filings_known(SOURCE, "AAPL", as_of=as_of)
    assert [f.provider_id for f in answered] == ["at", "10-Q"]
    # Figures come back exact, as Decimal.
    got = answered[1]
    assert got.figures == quarter.figures and got.accepted_at == quarter.accepted_at
    assert str(got.figures["income_statement"]["eps"]) == "1.5300"
    assert str(got.figures["balance_sheet"]["assets"]) == "-0.000001"
    assert got == Filing(**{**{n: getattr(quarter, n) for n in Filing.__dataclass_fields__},
                            "learned_at": got.learned_at})
    # The 10-K of a period that ended in March is known only when it was filed.
    cutoff = ny(dt.date(2025, 6, 3), 17, 30)  # EDGAR's, on the day it was filed
    assert [f.provider_id for f in store.filings_known(SOURCE, "AAPL", as_of=cutoff,
                                                       limit=2)] == ["10-K-late", "8-K-ish"]
    # Re-saved: left as it was; another symbol's (share class) report is its own row.
    assert store.save_filings(SOURCE, "AAPL", [], [annual]) == 0
    assert store.save_filings(SOURCE, "GOOG", [], [filing("10-Q", symbol="GOOG",
                                                         period_end=dt.date(2025, 3, 29),
                                                         filed=dt.date(2025, 5, 2))]) == 1
    assert [f.symbol for f in store.filings_known(SOURCE, "GOOG", as_of=as_of)] == ["GOOG"]


def test_actions_are_known_from_their_announcement_else_their_ex_date(store: Store) -> None:
    dividend = CorporateAction(
        source=SOURCE, provider_id="div", symbol="AAPL", kind=ActionKind.DIVIDEND,
        ex_date=dt.date(2025, 6, 9), announced_on=dt.date(2025, 5, 1),
        details={"cash_amount": "0.26", "currency": "USD", "pay_date": "2025-06-12",
                 "frequency": 4})
    split = CorporateAction(
        source=SOURCE, provider_id="split", symbol="AAPL", kind=ActionKind.SPLIT,
        ex_date=dt.date(2025, 6, 3), announced_on=None,
        details={"split_from": "1", "split_to": "4"})
    assert store.save_actions(SOURCE, "AAPL", [dt.date(2025, 6, 3), dt.date(2025, 6, 9)],
                              [dividend, split]) == 2
    as_of = calendar.session_close(DAY)
    [got] = store.actions_known(SOURCE, "AAPL", as_of=as_of)
    assert got == CorporateAction(**{**{n: getattr(dividend, n)
                                        for n in CorporateAction.__dataclass_fields__},
                                     "learned_at": got.learned_at})
    # The split is known from its ex-date's New York midnight, not a second before.
    midnight = dt.datetime(2025, 6, 3, tzinfo=NY)
    assert [a.provider_id for a in store.actions_known(SOURCE, "AAPL", as_of=midnight)] == \
        ["split", "div"]
    assert [a.provider_id for a in store.actions_known(SOURCE, "AAPL",
                                                       as_of=midnight - SECOND)] == ["div"]
    assert store.save_actions(SOURCE, "AAPL", [], [split]) == 0


def test_saving_marks_the_days_fetched_with_the_items_dated_on_them(store: Store) -> None:
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    store.save_news(SOURCE, "AAPL", days, [news("x", ny(days[1], 23, 59)),
                                           news("y", ny(days[1], 1)),
                                           news("z", ny(days[2], 0, 0, 1))])
    assert store.research_days(SOURCE, ResearchKind.NEWS, "AAPL", days[0], days[-1]) == \
        set(days)
    assert store.research_days(SOURCE, ResearchKind.NEWS, "AAPL", days[1], days[1]) == \
        {days[1]}
    assert store.research_days(SOURCE, ResearchKind.FILINGS, "AAPL", days[0], days[-1]) == \
        set()
    assert store.research_days("alpaca", ResearchKind.NEWS, "AAPL", days[0], days[-1]) == \
        set()
    store.save_filings(SOURCE, "AAPL", [DAY], [])  # a day with nothing filed is fetched too
    summary = {(s.kind, s.symbol): s for s in store.research_summary(source=SOURCE)}
    news_days = summary[ResearchKind.NEWS, "AAPL"]
    assert (news_days.first_day, news_days.last_day, news_days.days, news_days.items) == \
        (days[0], days[2], 3, 3)
    assert (summary[ResearchKind.FILINGS, "AAPL"].days,
            summary[ResearchKind.FILINGS, "AAPL"].items) == (1, 0)
    assert store.research_summary(symbol="MSFT") == []


def test_concurrent_saves_of_the_same_items_store_them_once(database_url: str) -> None:
    stores = [open_store(database_url, pool_size=2) for _ in range(4)]
    items = [news(f"c{i:03d}", ny(DAY, 9) + i * SECOND, tickers=("AAPL", "MSFT"))
             for i in range(60)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []
    new: list[int] = []

    def save(store: Store, order: int) -> None:
        try:
            barrier.wait(10)
            mine = items if order % 2 else list(reversed(items))
            new.append(store.save_news(SOURCE, "AAPL", [DAY], mine))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors and sum(new) == 60
        assert known(stores[0], ny(DAY, 10))[1] == 60
        assert known(stores[0], ny(DAY, 10), symbol="MSFT")[1] == 60
    finally:
        for s in stores:
            s.close()


# -- the cache ----------------------------------------------------------------------------
class CountingResearch(ResearchProvider):
    """A news item a day at 10:00 New York, a 10-Q each quarter's 40th day, a dividend
    each quarter's 10th; every call recorded."""

    source = SOURCE
    serves = frozenset({"news", "filings", "actions"})

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dt.date, dt.date]] = []

    def _days(self, kind: str, symbol: str, first: dt.date, last: dt.date) -> list[dt.date]:
        self.calls.append((kind, symbol, first, last))
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    def news(self, symbol: str, first: dt.date, last: dt.date) -> list[NewsItem]:
        return [news(f"{symbol}-{d}", ny(d, 10), tickers=(symbol,))
                for d in self._days("news", symbol, first, last)]

    def filings(self, symbol: str, first: dt.date, last: dt.date) -> list[Filing]:
        return [filing(f"{symbol}-{d}", symbol=symbol, filed=d, period_end=d - dt.timedelta(40))
                for d in self._days("filings", symbol, first, last)
                if d.month % 3 == 2 and d.day == 9]

    def actions(self, symbol: str, first: dt.date, last: dt.date) -> list[CorporateAction]:
        return [CorporateAction(source=SOURCE, provider_id=f"{symbol}-{d}", symbol=symbol,
                                kind=ActionKind.DIVIDEND, ex_date=d, announced_on=None,
                                details={"cash_amount": "0.25"})
                for d in self._days("actions", symbol, first, last)
                if d.month % 3 == 1 and d.day == 10]


def at_noon(day: dt.date) -> dt.datetime:
    return ny(day, 12)


def test_the_cache_fetches_each_day_once_in_chunks_and_then_reads_without_a_provider(
        store: Store) -> None:
    provider = CountingResearch()
    now = at_noon(dt.date(2025, 7, 1))
    cache = ResearchCache(store, SOURCE, provider, clock=lambda: now)
    progress: list[ResearchProgress] = []
    first, last = dt.date(2025, 1, 1), dt.date(2025, 3, 31)  # 90 days
    assert cache.news("AAPL", first, last, on_progress=progress.append) == 90
    assert [(c[2], c[3]) for c in provider.calls] == [
        (dt.date(2025, 1, 1), dt.date(2025, 1, 30)), (dt.date(2025, 1, 31), dt.date(2025, 3, 1)),
        (dt.date(2025, 3, 2), dt.date(2025, 3, 31))]
    assert CHUNK_DAYS[ResearchKind.NEWS] == 30
    assert [(p.days_done, p.days_total, p.items) for p in progress] == \
        [(0, 90, 0), (30, 90, 30), (60, 90, 60), (90, 90, 90)]

    # Fetched once: again, or a window inside it, asks nothing.
    assert cache.news("AAPL", first, last) == 0
    assert ResearchCache(store, SOURCE, provider, clock=lambda: now).news(
        "AAPL", dt.date(2025, 2, 1), dt.date(2025, 2, 28)) == 0
    assert len(provider.calls) == 3
    # A wider window asks only for the days it adds: a call for each run of them ...
    assert cache.news("AAPL", dt.date(2024, 12, 30), dt.date(2025, 4, 2)) == 4
    assert provider.calls[3:] == [
        ("news", "AAPL", dt.date(2024, 12, 30), dt.date(2024, 12, 31)),
        ("news", "AAPL", dt.date(2025, 4, 1), dt.date(2025, 4, 2))]
    # ... and one across a few days fetched already (asked again, stored once).
    assert cache.news("MSFT", dt.date(2025, 1, 5), dt.date(2025, 1, 7)) == 3
    assert cache.news("MSFT", dt.date(2025, 1, 1), dt.date(2025, 1, 10)) == 7
    assert provider.calls[-1] == ("news", "MSFT", dt.date(2025, 1, 1), dt.date(2025, 1, 10))
    assert known(store, ny(dt.date(2025, 1, 10), 16), symbol="MSFT")[1] == 10

    # No provider: the store answers what was fetched ...
    reader = ResearchCache(store, SOURCE, None, clock=lambda: now)
    assert reader.news("AAPL", first, last) == 0
    ids, total = known(store, ny(dt.date(2025, 3, 31), 16), limit=1,
                       since=ny(dt.date(2025, 1, 1), 0))
    assert ids == ["AAPL-2025-03-31"] and total == 90
    # ... and names the fetch that fills a window it never had.
    with pytest.raises(NoResearchData, match=(
            r"news of AAPL from polygon on 2 day\(s\) from 2025-04-03 to 2025-04-04 were "
            r"never fetched and polygon is not configured: fetch them with `tickrun data "
            r"fetch AAPL --start 2025-04-03 --end 2025-04-04 --news`")):
        reader.news("AAPL", dt.date(2025, 4, 1), dt.date(2025, 4, 4))
    with pytest.raises(NoResearchData, match="filings of MSFT"):
        reader.filings("MSFT", first, last)


def test_filings_and_actions_come_in_long_chunks_and_their_days_are_marked(
        store: Store) -> None:
    provider = CountingResearch()
    now = at_noon(dt.date(2025, 7, 1))
    cache = ResearchCache(store, SOURCE, provider, clock=lambda: now)
    first, last = reach(ResearchKind.FILINGS, dt.date(2025, 1, 2), dt.date(2025, 6, 30))
    assert (first, last) == (dt.date(2024, 1, 3), dt.date(2025, 6, 30))
    assert cache.filings("AAPL", first, last) == (last - first).days + 1 == 545
    assert [(c[2], c[3]) for c in provider.calls] == [
        (dt.date(2024, 1, 3), dt.date(2025, 2, 5)), (dt.date(2025, 2, 6), dt.date(2025, 6, 30))]
    assert CHUNK_DAYS[ResearchKind.FILINGS] == 400
    latest = store.filings_known(SOURCE, "AAPL", as_of=calendar.session_close(DAY), limit=2)
    assert [f.filing_date for f in latest] == [dt.date(2025, 5, 9), dt.date(2025, 2, 9)]

    a_first, a_last = reach(ResearchKind.ACTIONS, dt.date(2025, 1, 2), dt.date(2025, 3, 31))
    assert (a_first, a_last) == (dt.date(2024, 1, 3), dt.date(2025, 6, 29))
    assert cache.actions("AAPL", a_first, a_last) == 544
    assert len(provider.calls) == 4
    assert [a.ex_date for a in store.actions_known(SOURCE, "AAPL",
                                                   as_of=ny(dt.date(2025, 4, 10), 0))] == \
        [dt.date(2025, 4, 10), dt.date(2025, 1, 10), dt.date(2024, 10, 10),
         dt.date(2024, 7, 10), dt.date(2024, 4, 10), dt.date(2024, 1, 10)]
    summary = {s.kind: s for s in store.research_summary(symbol="AAPL")}
    assert (summary[ResearchKind.FILINGS].days, summary[ResearchKind.FILINGS].items) == (545, 6)
    assert (summary[ResearchKind.ACTIONS].days, summary[ResearchKind.ACTIONS].items) == (544, 6)


def test_a_day_not_over_is_fetched_once_per_cache_and_never_marked(store: Store) -> None:
    provider = CountingResearch()
    today = dt.date(2025, 6, 4)
    now = ny(today, 16, 30)  # after the close, before New York's midnight
    cache = ResearchCache(store, SOURCE, provider, clock=lambda: now)
    assert cache.news("AAPL", dt.date(2025, 6, 2), today) == 3
    assert store.research_days(SOURCE, ResearchKind.NEWS, "AAPL", dt.date(2025, 6, 2),
                               today) == {dt.date(2025, 6, 2), dt.date(2025, 6, 3)}
    assert known(store, now)[0][0] == "AAPL-2025-06-04"  # served meanwhile
    assert cache.news("AAPL", dt.date(2025, 6, 2), today) == 0  # this cache asked already
    # Another cache (a later run, the next fetch) asks again for that day alone ...
    later = ResearchCache(store, SOURCE, provider, clock=lambda: now)
    assert later.news("AAPL", dt.date(2025, 6, 2), today) == 1
    assert provider.calls[-1] == ("news", "AAPL", today, today)
    # ... and once it is over, once more, and then marks it.
    tomorrow = ResearchCache(store, SOURCE, provider, clock=lambda: ny(today, 23, 59) + SECOND * 60)
    assert tomorrow.news("AAPL", today, today) == 1
    assert tomorrow.news("AAPL", today, today) == 0
    assert today in store.research_days(SOURCE, ResearchKind.NEWS, "AAPL", today, today)
    # Without a provider, a day not over is served as it is, never refused.
    reader = ResearchCache(store, SOURCE, None, clock=lambda: now)
    assert reader.news("AAPL", today, today + dt.timedelta(days=3)) == 0


def test_ensure_for_holds_what_a_decision_may_read(store: Store) -> None:
    provider = CountingResearch()
    cache = ResearchCache(store, SOURCE, provider, clock=lambda: at_noon(dt.date(2025, 12, 1)))
    as_of = ny(DAY, 9, 31)
    assert cache.ensure_for(ResearchKind.NEWS, "AAPL", as_of, dt.timedelta(days=7)) == \
        (dt.date(2025, 5, 26), DAY)
    assert cache.ensure_for(ResearchKind.ACTIONS, "AAPL", as_of, dt.timedelta(days=365)) == \
        (dt.date(2024, 6, 2), dt.date(2025, 8, 31))
    assert [c[0] for c in provider.calls] == ["news", "actions", "actions"]  # 456 days
    cache.ensure_for(ResearchKind.NEWS, "AAPL", as_of, dt.timedelta(days=7))
    assert len(provider.calls) == 3


def test_a_provider_that_serves_no_filings_is_a_readable_refusal(store: Store) -> None:
    class NewsOnly(CountingResearch):
        source = "alpaca"
        serves = frozenset({"news"})

    cache = ResearchCache(store, "alpaca", NewsOnly(), clock=lambda: at_noon(dt.date(2025, 7, 1)))
    with pytest.raises(NoResearchData, match="alpaca serves no filings"):
        cache.filings("AAPL", dt.date(2025, 1, 1), dt.date(2025, 1, 31))
    assert cache.news("AAPL", dt.date(2025, 1, 1), dt.date(2025, 1, 31)) == 31


# -- the real client against the fake Massive/Polygon server ------------------------------
@pytest.fixture
def polygon() -> Iterator[FakePolygon]:
    with FakePolygon(KEY) as fake:
        research = fake.market.research
        research.add_news("p1", dt.datetime(2025, 6, 2, 13, 31, tzinfo=dt.UTC), ["AAPL"],
                          "Apple opens higher", "Shares rose at the open")
        research.add_news("p2", dt.datetime(2025, 6, 2, 13, 31, 1, tzinfo=dt.UTC),
                          ["AAPL", "MSFT"], "Apple and Microsoft", "A second later")
        research.add_news("p3", None, ["AAPL"], "Undated", indexed_at=dt.datetime(
            2025, 6, 2, 15, 0, tzinfo=dt.UTC))
        research.add_news("p4", dt.datetime(2025, 6, 5, 2, 0, tzinfo=dt.UTC), ["AAPL"],
                          "Late on the 4th in New York")
        research.add_financials("AAPL", 2025, "Q2", dt.date(2025, 3, 29), dt.date(2025, 5, 2),
                                dt.datetime(2025, 5, 1, 18, 3, tzinfo=NY),
                                {"income_statement": {"revenues": "95359000000",
                                                      "diluted_earnings_per_share": "1.53"}})
        research.add_financials("AAPL", 2024, "FY", dt.date(2024, 9, 28), dt.date(2025, 6, 3),
                                None, {"income_statement": {"revenues": "391035000000"}})
        research.add_dividend("AAPL", dt.date(2025, 5, 12), "0.26",
                              declaration_date=dt.date(2025, 5, 1),
                              pay_date=dt.date(2025, 5, 15))
        research.add_split("AAPL", dt.date(2020, 8, 31), 1, 4)
        yield fake


def test_polygon_research_is_fetched_once_and_answered_point_in_time(
        store: Store, polygon: FakePolygon) -> None:
    provider = PolygonResearch(SecretStr(KEY), polygon.url, 10.0)
    cache = ResearchCache(store, SOURCE, provider, clock=lambda: at_noon(dt.date(2025, 7, 1)))
    assert cache.news("AAPL", dt.date(2025, 6, 1), dt.date(2025, 6, 4)) == 4
    # The 10-K filed the day after is stored, and not known on the day.
    assert cache.filings("AAPL", *reach(ResearchKind.FILINGS, DAY, dt.date(2025, 6, 3))) == 367
    assert cache.actions("AAPL", *reach(ResearchKind.ACTIONS, DAY, DAY)) == 456
    asked = polygon.request_count
    assert cache.news("AAPL", dt.date(2025, 6, 1), dt.date(2025, 6, 4)) == 0
    assert ResearchCache(store, SOURCE, None).filings("AAPL", *reach(
        ResearchKind.FILINGS, DAY, DAY)) == 0
    assert polygon.request_count == asked

    as_of = dt.datetime(2025, 6, 2, 13, 31, tzinfo=dt.UTC)  # the end of the 09:30 bar
    assert known(store, as_of) == (["p1"], 1)
    assert known(store, as_of + SECOND) == (["p2", "p1"], 2)
    assert known(store, as_of + SECOND, symbol="MSFT") == (["p2"], 1)
    assert known(store, dt.datetime(2025, 6, 30, tzinfo=dt.UTC), query="4TH") == (["p4"], 1)
    close = calendar.session_close(DAY)
    [quarter] = store.filings_known(SOURCE, "AAPL", as_of=close)
    assert [f.fiscal_period for f in store.filings_known(
        SOURCE, "AAPL", as_of=ny(dt.date(2025, 6, 3), 17, 30))] == ["FY", "Q2"]
    assert (quarter.fiscal_period, quarter.accepted_at) == \
        ("Q2", dt.datetime(2025, 5, 1, 22, 3, tzinfo=dt.UTC))
    assert quarter.figures["income_statement"]["diluted_earnings_per_share"] == Decimal("1.53")
    [dividend] = store.actions_known(SOURCE, "AAPL", as_of=close)
    assert (dividend.kind, dividend.details["cash_amount"]) == (ActionKind.DIVIDEND, "0.26")
