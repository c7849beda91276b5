"""The provider a run spec names."""

from __future__ import annotations

from pathlib import Path

from core.spec import DataSource, RunSpec
from core.store import Store
from runner.marketdata.base import MarketData


def market_data_for(spec: RunSpec, store: Store, data_dir: Path) -> MarketData:
    if spec.data is DataSource.SYNTHETIC:
        from runner.marketdata.synthetic import SyntheticMarketData

        return SyntheticMarketData(spec.seed)
    if spec.data is DataSource.FILES:
        from runner.marketdata.files import FileMarketData

        return FileMarketData(data_dir)
    from runner.marketdata.table import TableMarketData

    return TableMarketData(store)
