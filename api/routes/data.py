"""/v1/data: the market data caches (bars; research: news, filings, corporate actions),
for operators.

GET /v1/data/bars and /v1/data/research say what the caches hold (market data is not
private: any caller may read it); POST /v1/data/fetches fills them ahead of runs (admin
only), synchronously, so the answer says what was fetched. `tickrun data fetch` does the
same in-process.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from api.auth import Caller
from api.deps import CallerDep, ServicesDep, is_operator
from api.errors import ApiProblem, problems
from api.schemas import JsonDate, StorableBody
from core import calendar
from core.errors import (
    InvalidSpec,
    NoMarketData,
    NoResearchData,
    ProviderRefused,
    ProviderUnavailable,
)
from core.marketdata.cache import BarCache, Progress
from core.marketdata.providers import Interval
from core.marketdata.sessions import require_closed
from core.marketdata.settings import MarketDataSettings, ProviderName
from core.research.cache import Progress as ResearchProgressFn
from core.research.cache import ResearchCache, ResearchProgress, reach
from core.spec import Symbol
from core.store import Store
from core.store.base import CachedSeries, ResearchKind, ResearchSeries

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/data", tags=["data"], responses=problems(401))

MAX_MINUTE_SESSIONS = 31
MAX_DAILY_YEARS = 30
_SYMBOL: TypeAdapter[str] = TypeAdapter(Symbol)


# -- what a fetch is: shared with `tickrun data fetch` -------------------------------------
class NotConfigured(InvalidSpec):
    """No provider (or not the one asked for) has its keys set."""


# The research each provider serves (core.research.providers: the provider's `serves`).
RESEARCH_SERVED: dict[ProviderName, tuple[ResearchKind, ...]] = {
    "polygon": (ResearchKind.NEWS, ResearchKind.FILINGS, ResearchKind.ACTIONS),
    "alpaca": (ResearchKind.NEWS,),
}


@dataclass(frozen=True, slots=True)
class ResearchWindow:
    """The New York days of one kind of research to fill (core.research.cache.reach):
    news over the range; filings from a year before it; actions from a year before it
    to 90 days after (days not over yet are fetched, never marked fetched)."""

    kind: ResearchKind
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True, slots=True)
class FetchPlan:
    source: ProviderName
    symbol: str
    interval: Interval
    days: list[dt.date]
    research: tuple[ResearchWindow, ...] = ()


def plan_fetch(symbol: str, start: dt.date, end: dt.date, interval: Interval,
               source: ProviderName | None, settings: MarketDataSettings, *,
               research: Sequence[ResearchKind] = (),
               now: dt.datetime | None = None) -> FetchPlan:
    """The sessions to fetch, the research windows and the provider to ask; InvalidSpec
    when the request cannot be served as asked (NotConfigured when no provider can, or
    the provider serves not the research asked for)."""
    try:
        symbol = _SYMBOL.validate_python(symbol.strip().upper())
    except ValidationError as exc:
        raise InvalidSpec(f"symbol: {symbol!r} is not a ticker (e.g. AAPL or BRK.B)") from exc
    if start > end:
        raise InvalidSpec(f"start {start} is after end {end}")
    now = now or dt.datetime.now(dt.UTC)
    today = pd.Timestamp(now).tz_convert(calendar.NEW_YORK).date()
    if end > today:
        raise InvalidSpec(f"end {end} is in the future (today is {today} in New York)")
    if interval is Interval.DAY and start < _years_before(end, MAX_DAILY_YEARS):
        raise InvalidSpec(f"at most {MAX_DAILY_YEARS} years of daily bars per fetch: "
                          f"{start} to {end} is longer; split it")
    days = calendar.sessions_in_range(start, end)
    if interval is Interval.MINUTE and len(days) > MAX_MINUTE_SESSIONS:
        raise InvalidSpec(f"at most {MAX_MINUTE_SESSIONS} sessions of minute bars per fetch: "
                          f"{start} to {end} holds {len(days)}; split it")
    require_closed(days[-1:], now)  # else it would be cached incomplete for good
    provider = _provider(source, settings)
    kinds = [ResearchKind(k) for k in dict.fromkeys(research)]
    unserved = [k.value for k in kinds if k not in RESEARCH_SERVED[provider]]
    if unserved:
        served = ", ".join(k.value for k in RESEARCH_SERVED[provider])
        raise InvalidSpec(f"{provider} serves no {' or '.join(unserved)} (only {served}); "
                          "polygon serves news, filings and corporate actions")
    windows = tuple(ResearchWindow(k, *reach(k, start, end)) for k in kinds)
    return FetchPlan(provider, symbol, interval, days, windows)


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _provider(source: ProviderName | None, settings: MarketDataSettings) -> ProviderName:
    configured = settings.configured()
    if source is None:
        default = settings.default_provider()
        if default is None:
            raise NotConfigured("no market data provider is configured: " + HOW_TO_CONFIGURE)
        return default
    if source not in configured:
        raise NotConfigured(f"{source} is not configured: {HOW_TO[source]}")
    return source


HOW_TO: dict[ProviderName, str] = {
    "polygon": "set TICKRUN_POLYGON_API_KEY (a Massive, formerly Polygon.io, API key)",
    "alpaca": "set TICKRUN_ALPACA_API_KEY_ID and TICKRUN_ALPACA_API_SECRET_KEY "
              "(and TICKRUN_ALPACA_FEED=sip on a paid plan)",
}
HOW_TO_CONFIGURE = f"{HOW_TO['polygon']}, or {HOW_TO['alpaca']}"


@dataclass(frozen=True, slots=True)
class ResearchFetched:
    window: ResearchWindow
    days_fetched: int
    items_fetched: int  # what the provider sent for the days fetched


@dataclass(frozen=True, slots=True)
class Fetched:
    plan: FetchPlan
    days_fetched: int
    bars: int
    research: tuple[ResearchFetched, ...] = ()



def fetch(store: Store, settings: MarketDataSettings, plan: FetchPlan, *,
          on_progress: Progress | None = None,
          on_research_progress: ResearchProgressFn | None = None) -> Fetched:
    """Fill the caches for the plan's days, then its research windows (only what was
    not fetched before: a second fetch of the same range asks the provider nothing).
    Raises NoMarketData, NoResearchData, ProviderRefused or ProviderUnavailable with
    messages that never hold a key."""
    from core.marketdata.providers.factory import build_provider  # loads provider clients

    try:
        provider = build_provider(plan.source, settings)
    except ProviderRefused as exc:  # a key set but blank
        raise NotConfigured(str(exc)) from None
    cache = BarCache(store, plan.source, provider)
    try:
        fetched = cache.fill(plan.symbol, plan.interval, plan.days, on_progress=on_progress)
        research = _fetch_research(store, settings, plan, on_research_progress)
    except (NoMarketData, NoResearchData, ProviderRefused, ProviderUnavailable) as exc:
        clean = redact(str(exc), settings)
        if clean == str(exc):
            raise
        again = type(exc)(clean)
        if isinstance(exc, ProviderUnavailable) and isinstance(again, ProviderUnavailable):
            again.delay = exc.delay
        raise again from None
    bars = sum(1 for _ in cache.load(plan.symbol, plan.interval, plan.days))
    return Fetched(plan, fetched, bars, research)


def _fetch_research(store: Store, settings: MarketDataSettings, plan: FetchPlan,
                    on_progress: ResearchProgressFn | None) -> tuple[ResearchFetched, ...]:
    if not plan.research:
        return ()
    from core.research.providers.factory import build_research_provider

    try:
        provider = build_research_provider(plan.source, settings)
    except ProviderRefused as exc:  # a key set but blank
        raise NotConfigured(str(exc)) from None
    cache = ResearchCache(store, plan.source, provider)
    done: list[ResearchFetched] = []
    for window in plan.research:
        received = [0]

        def progress(p: ResearchProgress, received: list[int] = received) -> None:
            received[0] = p.items
            if on_progress is not None:
                on_progress(p)

        days = cache.fill(window.kind, plan.symbol, window.first, window.last,
                          on_progress=progress)
        done.append(ResearchFetched(window, days, received[0]))
    return tuple(done)


def redact(text: str, settings: MarketDataSettings) -> str:
    """Any configured key that a provider's message echoes (a URL with apiKey=...)."""
    for secret in (settings.polygon_api_key, settings.alpaca_api_key_id,
                   settings.alpaca_api_secret_key):
        value = secret.get_secret_value() if secret is not None else ""
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


# -- the routes ---------------------------------------------------------------------------
class CachedSeriesOut(BaseModel):
    source: str = Field(description="The provider the bars came from", examples=["polygon"])
    symbol: str
    interval: Interval
    first_day: dt.date = Field(description="First cached session")
    last_day: dt.date = Field(description="Last cached session")
    days: int = Field(description="Sessions cached (gaps are possible between first and last)")
    bars: int
    fetched_at: dt.datetime = Field(description="When the latest of these days was fetched")

    @classmethod
    def of(cls, s: CachedSeries) -> CachedSeriesOut:
        return cls(source=s.source, symbol=s.symbol, interval=Interval(s.interval),
                   first_day=s.first_day, last_day=s.last_day, days=s.days, bars=s.bars,
                   fetched_at=s.fetched_at)


class BarCacheOut(BaseModel):
    items: list[CachedSeriesOut] = Field(
        description="One row per source, symbol and interval, by symbol, interval, source")


class ResearchSeriesOut(BaseModel):
    source: str = Field(description="The provider the items came from", examples=["polygon"])
    kind: ResearchKind
    symbol: str
    first_day: dt.date = Field(description="First New York day fetched")
    last_day: dt.date = Field(description="Last New York day fetched")
    days: int = Field(description="Days fetched (gaps are possible between first and last)")
    items: int = Field(description="Items dated on those days (news: published; filings: "
                                   "filed; actions: ex-date)")
    fetched_at: dt.datetime = Field(description="When the latest of these days was fetched")

    @classmethod
    def of(cls, s: ResearchSeries) -> ResearchSeriesOut:
        return cls(source=s.source, kind=s.kind, symbol=s.symbol, first_day=s.first_day,
                   last_day=s.last_day, days=s.days, items=s.items, fetched_at=s.fetched_at)


class ResearchCacheOut(BaseModel):
    items: list[ResearchSeriesOut] = Field(
        description="One row per source, kind and symbol, by symbol, kind, source")


FETCH_EXAMPLE: dict[str, Any] = {"symbol": "AAPL", "start": "2025-06-02", "end": "2025-06-30",
                 "interval": "1m", "source": "polygon", "research": ["news", "filings"]}


class FetchCreate(StorableBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [FETCH_EXAMPLE]})

    symbol: Symbol
    start: JsonDate = Field(description="First date (inclusive)")
    end: JsonDate = Field(description="Last date (inclusive), not before `start`, not in the "
                                      "future; the range must hold a session")
    interval: Interval = Field(description=f"1m: at most {MAX_MINUTE_SESSIONS} sessions; "
                                           f"1d: at most {MAX_DAILY_YEARS} years")
    source: ProviderName | None = Field(
        default=None, description="Unset: the configured default provider")
    research: list[ResearchKind] = Field(
        default_factory=list, max_length=3,
        description="Research to fetch too, after the bars: `news` of the range; `filings` "
                    "(10-Q, 10-K) filed from a year before `start` to `end`; `actions` "
                    "(splits, dividends) with ex-dates from a year before `start` to 90 "
                    "days after `end`. polygon serves all three, alpaca news only")


class ResearchFetchOut(BaseModel):
    kind: ResearchKind
    first: dt.date = Field(description="First New York day of the window")
    last: dt.date = Field(description="Last New York day of the window")
    days: int = Field(description="Days in the window")
    days_fetched: int = Field(description="Days this request asked the provider for (days "
                                          "not over yet are asked every time); the others "
                                          "were fetched already")
    items_fetched: int = Field(description="Items the provider sent for those days (each "
                                           "is stored once)")

    @classmethod
    def of(cls, r: ResearchFetched) -> ResearchFetchOut:
        w = r.window
        return cls(kind=w.kind, first=w.first, last=w.last, days=w.days,
                   days_fetched=r.days_fetched, items_fetched=r.items_fetched)


class FetchOut(BaseModel):
    source: ProviderName
    symbol: str
    interval: Interval
    days: int = Field(description="Sessions in the range")
    days_fetched: int = Field(description="Sessions this request fetched from the provider; "
                                          "the others were cached already")
    bars: int = Field(description="Bars the cache holds for the range now")
    research: list[ResearchFetchOut] | None = Field(
        default=None, description="Present when the request asked for research: one entry "
                                  "per kind, in the order asked")


def admin(who: CallerDep, svc: ServicesDep) -> Caller:
    """Only an operator may spend the provider accounts' quota: a user named in
    TICKRUN_OPERATOR_USER_IDS, or the `tickrun dev` token."""
    if not is_operator(who, svc):
        raise ApiProblem(403, "fetching market data is for operators: run `tickrun data "
                              "fetch` where the database is reachable")
    return who


AdminDep = Annotated[Caller, Depends(admin)]
SourceQuery = Annotated[ProviderName | None, Query(description="Only this provider's bars")]
SymbolQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z]{1,5}([.\-][A-Za-z]{1,2})?$",
                                          description="Only this ticker (any case)")]


@router.get("/bars", response_model=BarCacheOut, responses=problems(422))
def list_cached_bars(who: CallerDep, svc: ServicesDep, source: SourceQuery = None,
                     symbol: SymbolQuery = None) -> BarCacheOut:
    """What the bar cache holds: per source, symbol and interval, the sessions and bars."""
    series = svc.store.cache_summary(source=source, symbol=symbol.upper() if symbol else None)
    return BarCacheOut(items=[CachedSeriesOut.of(s) for s in series])


@router.get("/research", response_model=ResearchCacheOut, responses=problems(422))
def list_cached_research(who: CallerDep, svc: ServicesDep, source: SourceQuery = None,
                         symbol: SymbolQuery = None) -> ResearchCacheOut:
    """What the research cache holds: per source, kind and symbol, the days fetched and
    the items dated on them."""
    series = svc.store.research_summary(source=source,
                                        symbol=symbol.upper() if symbol else None)
    return ResearchCacheOut(items=[ResearchSeriesOut.of(s) for s in series])


@router.post("/fetches", response_model=FetchOut, response_model_exclude_none=True,
             responses=problems(
    400, 403, 413, 422, 502, 503, why={
        403: "Not an operator: fetching spends the provider account's quota",
        422: "The body does not validate (`errors` lists each problem), or it cannot be "
             "served: no session in the range, in the future or today before the close, "
             f"over {MAX_MINUTE_SESSIONS} sessions of minutes or {MAX_DAILY_YEARS} years of "
             "days, the provider is not configured (the detail says how to configure it) "
             "or serves not the research asked for, or the provider has no bars (an "
             "unknown or delisted symbol)",
        502: "The provider refused the request (a wrong key, a plan without the data); "
             "the detail gives its reason",
        503: "The provider or the database does not answer; retry after Retry-After "
             "seconds (days already fetched stay cached)"}))
def create_fetch(body: FetchCreate, who: AdminDep, svc: ServicesDep) -> FetchOut:
    """Fill the bar cache (and, asked, the research cache) for a symbol and date range
    now; the days already cached are not fetched again. Runs of these sessions then read
    the cache."""
    plan = plan_fetch(body.symbol, body.start, body.end, body.interval, body.source,
                      svc.market_data, research=body.research)
    try:
        done = fetch(svc.store, svc.market_data, plan)
    except ProviderRefused as exc:
        raise ApiProblem(502, str(exc)) from exc
    except ProviderUnavailable as exc:
        raise ApiProblem(503, str(exc),
                         headers={"Retry-After": str(max(1, int(exc.delay)))}) from exc
    except NoMarketData as exc:
        raise ApiProblem(422, str(exc)) from exc
    log.info("%s fetched %d of %d %s day(s) of %s from %s", who.user_id, done.days_fetched,
             len(plan.days), plan.interval.value, plan.symbol, plan.source)
    for r in done.research:
        log.info("%s fetched %d of %d day(s) of %s %s from %s", who.user_id, r.days_fetched,
                 r.window.days, plan.symbol, r.window.kind.value, plan.source)
    return FetchOut(source=plan.source, symbol=plan.symbol, interval=plan.interval,
                    days=len(plan.days), days_fetched=done.days_fetched, bars=done.bars,
                    research=[ResearchFetchOut.of(r) for r in done.research]
                    if plan.research else None)
