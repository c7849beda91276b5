"""The bar cache on both stores: session truth, one fetch per day, concurrent fetches,
and which source a run gets. The provider here is an in-process script (the real
clients against local servers are tested in test_market_providers.py)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from pydantic import SecretStr

from core import calendar
from core.bars import Bar
from core.errors import InvalidSpec, NoMarketData
from core.marketdata.cache import BarCache, FillProgress
from core.marketdata.providers import BarProvider, Interval
from core.marketdata.resolve import resolve_data_source
from core.marketdata.sessions import require_closed
from core.marketdata.settings import MarketDataSettings
from core.spec import DataSource
from core.store import Store, open_store
from runner.marketdata import timeline_for
from runner.marketdata.cached import CachedMarketData
from tests.factories import daily_spec, intraday_spec

DAY = dt.date(2025, 6, 2)
HALF_DAY = dt.date(2024, 11, 29)


class ScriptedProvider(BarProvider):
    """Every minute from 04:00 to 20:00 New York (extended hours included), priced by
    minute index, minus the `gaps`; daily bars stamped midnight New York, as providers
    send them. `empty` days have no bars at all."""

    source = "polygon"

    def __init__(self, gaps: set[dt.datetime] = frozenset(),  # type: ignore[assignment]
                 empty: set[dt.date] = frozenset()) -> None:  # type: ignore[assignment]
        self.gaps = gaps
        self.empty = empty
        self.calls: list[tuple[str, Interval, dt.date, dt.date]] = []
        self.lock = threading.Lock()

    def fetch(self, symbol: str, interval: Interval, first: dt.date,
              last: dt.date) -> list[Bar]:
        with self.lock:
            self.calls.append((symbol, interval, first, last))
        days = [d for d in calendar.sessions_in_range(first, last) if d not in self.empty]
        if interval is Interval.DAY:
            return [_bar(dt.datetime.combine(d, dt.time(), calendar_tz()), i)
                    for i, d in enumerate(days)]
        return [_bar(t, i) for d in days for i, t in enumerate(_extended_minutes(d))
                if t not in self.gaps]


def calendar_tz() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(calendar.NEW_YORK)


def _extended_minutes(day: dt.date) -> list[dt.datetime]:
    start = dt.datetime.combine(day, dt.time(4), calendar_tz()).astimezone(dt.UTC)
    return [start + dt.timedelta(minutes=i) for i in range(16 * 60)]


def _bar(t: dt.datetime, i: int) -> Bar:
    price = Decimal(100) + Decimal(i) / 100
    return Bar(t.astimezone(dt.UTC), price, price + 1, price - 1, price, Decimal(500))


def test_a_session_keeps_its_regular_minutes_and_fills_gaps(store: Store) -> None:
    session = calendar.session_minutes(DAY)
    provider = ScriptedProvider(gaps={session[5], session[6]})
    data = CachedMarketData(BarCache(store, "polygon", provider))
    bars = data.bars("AAPL", timeline_for(intraday_spec(DAY, data="polygon")))
    assert [b.time for b in bars] == session and len(bars) == 390
    # 09:30 New York is minute 330 after 04:00: priced by that index.
    assert bars[0].open == Decimal("103.30") and bars[0].volume == 500
    assert [i for i, b in enumerate(bars) if b.filled] == [5, 6]
    assert bars[5].close == bars[4].close and bars[5].volume == 0
    half = data.bars("AAPL", timeline_for(intraday_spec(HALF_DAY, data="polygon")))
    assert len(half) == 210 and half[-1].time.hour == 17 and half[-1].time.minute == 59


def test_a_cached_day_is_never_fetched_again_and_replays_the_same_bars(store: Store) -> None:
    provider = ScriptedProvider()
    timeline = timeline_for(intraday_spec(DAY, data="polygon"))
    first = CachedMarketData(BarCache(store, "polygon", provider)).bars("AAPL", timeline)
    # No provider at all now: the cache alone serves the session.
    again = CachedMarketData(BarCache(store, "polygon", None)).bars("AAPL", timeline)
    assert first == again and len(provider.calls) == 1
    assert store.cached_days("polygon", "AAPL", "1m", DAY, DAY) == {DAY}
    assert store.cached_days("alpaca", "AAPL", "1m", DAY, DAY) == set()


def test_a_daily_range_is_fetched_in_chunks_and_stamped_by_date(store: Store) -> None:
    spec = daily_spec(dt.date(2024, 1, 2), dt.date(2024, 12, 31), data="polygon")
    provider = ScriptedProvider()
    progress: list[FillProgress] = []
    data = CachedMarketData(BarCache(store, "polygon", provider), progress.append)
    bars = data.bars("SPY", timeline_for(spec))
    assert len(bars) == 252 and not any(b.filled for b in bars)
    assert bars[0].time == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    assert [p.days_done for p in progress] == [0, 252] and progress[-1].bars == 252
    [summary] = store.cache_summary(symbol="SPY")
    assert (summary.source, summary.interval, summary.days, summary.bars) == \
        ("polygon", "1d", 252, 252)
    assert (summary.first_day, summary.last_day) == (dt.date(2024, 1, 2), dt.date(2024, 12, 31))


def test_minutes_over_many_days_come_a_chunk_per_request_with_progress(store: Store) -> None:
    days = calendar.sessions_in_range(dt.date(2025, 1, 2), dt.date(2025, 3, 7))
    provider = ScriptedProvider()
    progress: list[FillProgress] = []
    fetched = BarCache(store, "polygon", provider).fill("AAPL", Interval.MINUTE, days,
                                                        on_progress=progress.append)
    # 44 sessions: 2025-01-09 was no session (a national day of mourning).
    assert fetched == len(days) == 44 and len(provider.calls) == 3
    assert [p.days_done for p in progress] == [0, 20, 40, 44]
    assert progress[-1].bars == sum(len(calendar.session_minutes(d)) for d in days)
    assert BarCache(store, "polygon", provider).fill("AAPL", Interval.MINUTE, days) == 0
    assert len(provider.calls) == 3


def test_a_day_without_bars_fails_with_a_readable_reason_and_keeps_the_rest(
        store: Store) -> None:
    hole = dt.date(2024, 3, 13)
    provider = ScriptedProvider(empty={hole})
    spec = daily_spec(dt.date(2024, 3, 1), dt.date(2024, 3, 28), data="polygon")
    with pytest.raises(NoMarketData, match=r"no bars for SPY on 2024-03-13 from polygon"):
        CachedMarketData(BarCache(store, "polygon", provider)).bars("SPY", timeline_for(spec))
    cached = store.cached_days("polygon", "SPY", "1d", spec.first_day, spec.last_day)
    assert len(cached) == 19 and hole not in cached
    with pytest.raises(NoMarketData, match=r"not cached .* polygon is not configured"):
        BarCache(store, "polygon", None).fill("SPY", Interval.DAY, [hole])


def test_concurrent_fetches_of_one_day_store_its_bars_once(database_url: str) -> None:
    stores = [open_store(database_url, pool_size=2) for _ in range(4)]
    provider = ScriptedProvider()
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def fetch(store: Store) -> None:
        try:
            barrier.wait(10)
            BarCache(store, "polygon", provider).fill("AAPL", Interval.MINUTE, [DAY])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors
        start = dt.datetime.combine(DAY, dt.time(), dt.UTC)
        rows = list(stores[0].load_prices("AAPL", "1m", start, start + dt.timedelta(days=1),
                                          source="polygon"))
        assert len(rows) == 390 and len({r.bar_time for r in rows}) == 390
        [summary] = stores[0].cache_summary(source="polygon")
        assert (summary.days, summary.bars) == (1, 390)
    finally:
        for s in stores:
            s.close()


def test_operator_table_rows_and_provider_rows_are_separate_sources(store: Store) -> None:
    BarCache(store, "polygon", ScriptedProvider()).fill("AAPL", Interval.MINUTE, [DAY])
    start = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    assert list(store.load_prices("AAPL", "1m", start, end)) == []  # source "table"
    assert len(list(store.load_prices("AAPL", "1m", start, end, source="polygon"))) == 390


def settings(**kw: str) -> MarketDataSettings:
    secrets = {k: SecretStr(v) for k, v in kw.items() if "key" in k}
    plain = {k: v for k, v in kw.items() if "key" not in k}
    return MarketDataSettings(_env_file=None, **secrets, **plain)  # type: ignore[arg-type,call-arg]


def test_a_run_without_data_gets_the_cache_then_the_provider_never_synthetic(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLYGON_API_KEY", "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY",
                 "MARKET_DATA_PROVIDER"):
        monkeypatch.delenv(f"TICKRUN_{name}", raising=False)
    spec = intraday_spec(DAY, data=None)
    with pytest.raises(InvalidSpec) as refused:
        resolve_data_source(spec, store, settings())
    message = str(refused.value)
    assert "no market data for AAPL on 2025-06-02" in message
    assert "TICKRUN_POLYGON_API_KEY" in message and '"data": "synthetic"' in message
    assert "tickrun data fetch AAPL --start 2025-06-02 --end 2025-06-02" in message

    alpaca = settings(alpaca_api_key_id="id", alpaca_api_secret_key="secret")
    assert resolve_data_source(spec, store, alpaca).data is DataSource.ALPACA
    both = settings(polygon_api_key="k", alpaca_api_key_id="id", alpaca_api_secret_key="s")
    assert resolve_data_source(spec, store, both).data is DataSource.POLYGON

    BarCache(store, "polygon", ScriptedProvider()).fill("AAPL", Interval.MINUTE, [DAY])
    assert resolve_data_source(spec, store, settings()).data is DataSource.POLYGON
    assert resolve_data_source(spec, store, alpaca).data is DataSource.POLYGON  # cached
    explicit = intraday_spec(DAY, data="alpaca")
    with pytest.raises(InvalidSpec, match="alpaca is not configured"):
        resolve_data_source(explicit, store, settings())
    synthetic = intraday_spec(DAY, data="synthetic")
    assert resolve_data_source(synthetic, store, settings()) == synthetic


def test_a_session_still_trading_is_never_cached_partial() -> None:
    during = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
    with pytest.raises(InvalidSpec, match=r"2025-06-02 session has not closed yet .*20:00 UTC"):
        require_closed([DAY], during)
    with pytest.raises(InvalidSpec, match="closes at 18:00 UTC"):  # a half day, 13:00 EST
        require_closed([HALF_DAY], dt.datetime(2024, 11, 29, 17, 0, tzinfo=dt.UTC))
    require_closed([DAY], dt.datetime(2025, 6, 2, 20, 0, 1, tzinfo=dt.UTC))
