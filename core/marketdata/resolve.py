"""Which source a run's bars come from, decided once when the run is accepted.

A spec without `data` gets the bar cache, then the configured provider; with neither
the run is refused (never synthetic by surprise). The stored spec names the source, so
the run, its list row and its result say where its bars came from.
"""

from __future__ import annotations

import datetime as dt

from core.errors import InvalidSpec
from core.marketdata.sessions import require_closed
from core.marketdata.settings import MarketDataSettings
from core.spec import DataSource, RunSpec
from core.store import Store

PROVIDERS = (DataSource.POLYGON, DataSource.ALPACA)


def resolve_data_source(spec: RunSpec, store: Store, settings: MarketDataSettings, *,
                        now: dt.datetime | None = None) -> RunSpec:
    """The spec with `data` set to the source that will serve it, as of `now` (a
    schedule's fire time; default: now); InvalidSpec when no source can (the API
    answers 422 with how to configure one)."""
    if spec.data is not None and not spec.data.is_provider:
        return spec
    if spec.live is not None:  # a stream, not a finished session: only a provider serves it
        return _live_source(spec, settings)
    require_closed(spec.session_days()[-1:], now)
    configured = {DataSource(name) for name in settings.configured()}
    if spec.data is not None:
        if spec.data in configured or fully_cached(spec, store, spec.data):
            return spec
        raise InvalidSpec(f"{spec.data.value} is not configured and its bar cache does not "
                          f"hold {_what(spec)}: {_how_to_configure(spec)}")
    default = settings.default_provider()
    preferred = [DataSource(default)] if default else []
    for source in preferred + [p for p in PROVIDERS if p.value != default]:
        if fully_cached(spec, store, source):
            return spec.model_copy(update={"data": source})
    if default is not None:
        return spec.model_copy(update={"data": DataSource(default)})
    raise InvalidSpec(f"no market data for {_what(spec)}: the bar cache does not hold it and "
                      f"no provider is configured. {_how_to_configure(spec)}")


def _live_source(spec: RunSpec, settings: MarketDataSettings) -> RunSpec:
    configured = {DataSource(name) for name in settings.configured()}
    source = spec.data or (DataSource(d) if (d := settings.default_provider()) else None)
    if source is None or source not in configured:
        raise InvalidSpec(f"a live run streams its bars from a provider, and "
                          f"{source.value if source else 'none'} is not configured: set "
                          "TICKRUN_POLYGON_API_KEY (Massive) or TICKRUN_ALPACA_API_KEY_ID and "
                          "TICKRUN_ALPACA_API_SECRET_KEY")
    return spec.model_copy(update={"data": source})


def fully_cached(spec: RunSpec, store: Store, source: DataSource) -> bool:
    days = spec.session_days()
    return all(len(store.cached_days(source.value, symbol, spec.interval, days[0], days[-1]))
               >= len(days) for symbol in spec.symbols)


def _what(spec: RunSpec) -> str:
    symbols = ",".join(spec.symbols)
    if spec.first_day == spec.last_day:
        return f"{symbols} on {spec.first_day}"
    return f"{symbols} from {spec.first_day} to {spec.last_day}"


def _how_to_configure(spec: RunSpec) -> str:
    fetch = (f"tickrun data fetch {spec.symbols[0]} --start {spec.first_day} "
             f"--end {spec.last_day} --interval {spec.interval}")
    return ("Set TICKRUN_POLYGON_API_KEY (Massive) or TICKRUN_ALPACA_API_KEY_ID and "
            f"TICKRUN_ALPACA_API_SECRET_KEY, fill the cache ahead with `{fetch}`, or ask "
            'for seeded random bars explicitly with "data": "synthetic"')
