"""`tickrun data`: the market data caches (bars; research: news, filings, corporate
actions), in-process against TICKRUN_DATABASE_URL.

`fetch` fills the caches ahead of runs with the provider keys of the environment (the
operator's way to fetch a long range once, with a progress bar); `ls` shows what they
hold. Both open the database themselves, as `python -m core.migrate` does; no API
server is involved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from api.cli.output import JsonOpt, err, out, print_json
from core.marketdata.providers import Interval

if TYPE_CHECKING:
    from api.routes.data import Fetched, FetchPlan
    from core.marketdata.settings import MarketDataSettings
    from core.store import Store
    from core.store.base import ResearchKind

app = typer.Typer(help="The market data caches (bars, and research: news, filings, "
                       "corporate actions): fill them ahead of runs, list them.",
                  no_args_is_help=True)

EXIT_INPUT = 2  # the request cannot be served as asked; nothing was fetched
EXIT_PROVIDER = 1  # the provider (or the database) refused or did not answer


class SourceChoice(StrEnum):
    POLYGON = "polygon"
    ALPACA = "alpaca"


Day = Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], show_default=False)]


def fail(message: str, code: int) -> typer.Exit:
    """One line on stderr; the exit to raise."""
    err.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def open_cache_store() -> Iterator[Store]:
    """The store of TICKRUN_DATABASE_URL. The embedded default (SQLite) is migrated
    first, as `tickrun dev` does; PostgreSQL is migrated by its own Job (`python -m
    core.migrate`), never by a CLI on the side."""
    from core.errors import StoreUnavailable
    from core.settings import CoreSettings
    from core.store import open_store

    url = CoreSettings().database_url.get_secret_value()
    sqlite = url.startswith("sqlite")
    if sqlite:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(url, pool_size=2)
        if sqlite:
            store.migrate()
    except StoreUnavailable as exc:
        raise fail(f"the database does not answer: {exc}", EXIT_PROVIDER) from exc
    try:
        yield store
    finally:
        store.close()


@app.command("fetch")
def fetch_command(
    symbol: Annotated[str, typer.Argument(help="Ticker, e.g. AAPL or BRK.B")],
    start: Day,
    end: Day,
    interval: Annotated[Interval, typer.Option(help="1m: minute bars of the regular "
                                                    "session; 1d: daily bars")
                        ] = Interval.DAY,
    source: Annotated[SourceChoice | None, typer.Option(
        help="The provider; default: TICKRUN_MARKET_DATA_PROVIDER, else the one whose "
             "keys are set", show_default=False)] = None,
    news: Annotated[bool, typer.Option(
        "--news", help="Also fetch the symbol's news published from --start to --end "
                       "(polygon, alpaca)", rich_help_panel="Research")] = False,
    filings: Annotated[bool, typer.Option(
        "--filings", help="Also fetch its 10-Q and 10-K figures filed from a year before "
                          "--start to --end (polygon)", rich_help_panel="Research")] = False,
    actions: Annotated[bool, typer.Option(
        "--actions", help="Also fetch its splits and dividends with ex-dates from a year "
                          "before --start to 90 days after --end (polygon)",
        rich_help_panel="Research")] = False,
    research: Annotated[bool, typer.Option(
        "--research", help="All the research the provider serves: polygon news, filings "
                           "and actions; alpaca news", rich_help_panel="Research")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a symbol's bars (and, asked, its research) from the provider into the cache
    (days already fetched are not fetched again)."""
    from api.routes.data import RESEARCH_SERVED, plan_fetch, redact
    from core.errors import (
        InvalidSpec,
        NoMarketData,
        ProviderRefused,
        ProviderUnavailable,
        StoreUnavailable,
    )
    from core.marketdata.settings import MarketDataSettings
    from core.store.base import ResearchKind

    settings = MarketDataSettings()
    asked = [kind for kind, on in ((ResearchKind.NEWS, news), (ResearchKind.FILINGS, filings),
                                   (ResearchKind.ACTIONS, actions)) if on]
    try:
        if research:  # what the provider serves, besides any asked for by name
            provider = plan_fetch(symbol, start.date(), end.date(), interval,
                                  source.value if source else None, settings).source
            asked += [k for k in RESEARCH_SERVED[provider] if k not in asked]
        plan = plan_fetch(symbol, start.date(), end.date(), interval,
                          source.value if source else None, settings, research=asked)
    except InvalidSpec as exc:
        raise fail(str(exc), EXIT_INPUT) from exc
    with open_cache_store() as store:
        try:
            done = _fetch_with_progress(store, settings, plan, quiet=as_json)
        except (NoMarketData, ProviderRefused, ProviderUnavailable, StoreUnavailable) as exc:
            raise fail(redact(str(exc), settings), EXIT_PROVIDER) from exc
        except InvalidSpec as exc:  # a provider key set but blank
            raise fail(redact(str(exc), settings), EXIT_INPUT) from exc
    if as_json:
        answer: dict[str, object] = {
            "source": plan.source, "symbol": plan.symbol, "interval": plan.interval.value,
            "days": len(plan.days), "days_fetched": done.days_fetched, "bars": done.bars}
        if plan.research:
            answer["research"] = [
                {"kind": r.window.kind.value, "first": r.window.first.isoformat(),
                 "last": r.window.last.isoformat(), "days": r.window.days,
                 "days_fetched": r.days_fetched, "items_fetched": r.items_fetched}
                for r in done.research]
        print_json(answer)
        return
    cached = len(plan.days) - done.days_fetched
    out.print(f"{plan.symbol} {plan.interval.value} from {plan.source}: {len(plan.days)} "
              f"session(s) {plan.days[0]} to {plan.days[-1]}, {done.days_fetched} fetched, "
              f"{cached} already cached; {done.bars:,} bars in the cache", highlight=False)
    for r in done.research:
        w = r.window
        out.print(f"{plan.symbol} {w.kind.value} from {plan.source}: {w.days} day(s) "
                  f"{w.first} to {w.last}, {r.days_fetched} fetched, "
                  f"{w.days - r.days_fetched} already fetched; {r.items_fetched:,} item(s) "
                  "received", highlight=False)


def _fetch_with_progress(store: Store, settings: MarketDataSettings, plan: FetchPlan, *,
                         quiet: bool) -> Fetched:
    from api.routes.data import fetch
    from core.marketdata.cache import BarCache, FillProgress
    from core.research.cache import ResearchProgress

    missing = BarCache(store, plan.source, None).missing(plan.symbol, plan.interval,
                                                         plan.days)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("days"), TextColumn("{task.fields[count]}"), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=quiet or not (missing or plan.research),
                  transient=False) as bar:
        if missing:
            task = bar.add_task(f"[bold]{plan.symbol} {plan.interval.value}[/bold] from "
                                f"{plan.source}", total=len(missing), count="0 bars")

        def progress(p: FillProgress) -> None:
            bar.update(task, completed=p.days_done, total=p.days_total,
                       count=f"{p.bars:,} bars")

        tasks: dict[ResearchKind, TaskID] = {}

        def research_progress(p: ResearchProgress) -> None:
            if p.kind not in tasks:  # a kind with nothing to fetch shows no bar
                tasks[p.kind] = bar.add_task(
                    f"[bold]{plan.symbol} {p.kind.value}[/bold] from {plan.source}",
                    total=p.days_total, count="0 items")
            bar.update(tasks[p.kind], completed=p.days_done, total=p.days_total,
                       count=f"{p.items:,} items")

        return fetch(store, settings, plan, on_progress=progress,
                     on_research_progress=research_progress)


@app.command("ls")
def ls_command(
    symbol: Annotated[str | None, typer.Option(help="Only this ticker")] = None,
    source: Annotated[SourceChoice | None, typer.Option(help="Only this provider",
                                                        show_default=False)] = None,
    research: Annotated[bool, typer.Option(
        "--research", help="The research cache (news, filings, actions) instead of bars")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """What the bar cache holds: per source, symbol and interval (--research: what the
    research cache holds, per source, kind and symbol)."""
    if research:
        _ls_research(symbol, source, as_json)
        return
    from api.routes.data import BarCacheOut, CachedSeriesOut

    with open_cache_store() as store:
        series = store.cache_summary(source=source.value if source else None,
                                     symbol=symbol.strip().upper() if symbol else None)
    page = BarCacheOut(items=[CachedSeriesOut.of(s) for s in series])
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    if not page.items:
        err.print("the bar cache is empty" + (" for that filter" if symbol or source else "")
                  + "; fill it with `tickrun data fetch SYMBOL --start D --end D`")
        return
    table = Table("source", "symbol", "interval", "first", "last", "days", "bars", "fetched",
                  box=None)
    for s in page.items:
        table.add_row(s.source, s.symbol, s.interval.value, str(s.first_day), str(s.last_day),
                      f"{s.days:,}", f"{s.bars:,}",
                      s.fetched_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    out.print(table)


def _ls_research(symbol: str | None, source: SourceChoice | None, as_json: bool) -> None:
    from api.routes.data import ResearchCacheOut, ResearchSeriesOut

    with open_cache_store() as store:
        series = store.research_summary(source=source.value if source else None,
                                        symbol=symbol.strip().upper() if symbol else None)
    page = ResearchCacheOut(items=[ResearchSeriesOut.of(s) for s in series])
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    if not page.items:
        err.print("the research cache is empty"
                  + (" for that filter" if symbol or source else "")
                  + "; fill it with `tickrun data fetch SYMBOL --start D --end D --research`")
        return
    table = Table("source", "kind", "symbol", "first", "last", "days", "items", "fetched",
                  box=None)
    for s in page.items:
        table.add_row(s.source, s.kind.value, s.symbol, str(s.first_day), str(s.last_day),
                      f"{s.days:,}", f"{s.items:,}",
                      s.fetched_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    out.print(table)
