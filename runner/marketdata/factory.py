"""The provider a run spec names."""

from __future__ import annotations

from pathlib import Path

from core.marketdata.cache import BarCache, Progress
from core.marketdata.settings import MarketDataSettings, ProviderName
from core.spec import DataSource, RunSpec
from core.store import Store
from runner.marketdata.base import MarketData


def market_data_for(spec: RunSpec, store: Store, data_dir: Path,
                    settings: MarketDataSettings | None = None, *,
                    on_fetch: Progress | None = None) -> MarketData:
    """`spec.data` is set by the API when it accepts the run (core.marketdata.resolve);
    a spec without it reaching here was stored by an older version: synthetic then."""
    if spec.data is None or spec.data is DataSource.SYNTHETIC:
        from runner.marketdata.synthetic import SyntheticMarketData

        return SyntheticMarketData(spec.bars_seed)  # a cell's repeats share their bars
    if spec.data is DataSource.FILES:
        from runner.marketdata.files import FileMarketData

        return FileMarketData(data_dir)
    if spec.data is DataSource.TABLE:
        from runner.marketdata.table import TableMarketData

        return TableMarketData(store)
    # The provider clients load only when a run uses them.
    from core.marketdata.providers.factory import build_provider
    from runner.marketdata.cached import CachedMarketData

    settings = settings or MarketDataSettings()
    name: ProviderName = "polygon" if spec.data is DataSource.POLYGON else "alpaca"
    provider = build_provider(name, settings) if name in settings.configured() else None
    return CachedMarketData(BarCache(store, spec.data.value, provider), on_fetch)
