"""Market data providers: synthetic, CSV/Parquet files, the stock_prices table."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.errors import InvalidSpec
from core.store import Store
from core.store.base import PriceBar
from runner.marketdata import timeline_for
from runner.marketdata.files import FileMarketData
from runner.marketdata.synthetic import SyntheticMarketData
from runner.marketdata.table import TableMarketData
from tests.factories import daily_spec, intraday_spec


def test_synthetic_bars_are_deterministic_and_consistent() -> None:
    timeline = timeline_for(intraday_spec())
    a = SyntheticMarketData(seed=1).bars("AAPL", timeline)
    assert a == SyntheticMarketData(seed=1).bars("AAPL", timeline)
    assert a != SyntheticMarketData(seed=2).bars("AAPL", timeline)
    assert len(a) == 390 and all(b.low <= min(b.open, b.close) for b in a)
    assert all(b.high >= max(b.open, b.close) for b in a)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_daily_bars_from_files(tmp_path: Path, suffix: str) -> None:
    spec = daily_spec(dt.date(2024, 12, 23), dt.date(2024, 12, 31))
    days = ["2024-12-20", "2024-12-23", "2024-12-24", "2024-12-26", "2024-12-30",
            "2024-12-31"]  # 12-27 missing: forward-filled
    frame = pd.DataFrame({"time": days, "open": [10.0 + i for i in range(6)],
                          "high": [11.0 + i for i in range(6)], "low": [9.0] * 6,
                          "close": [10.5 + i for i in range(6)], "volume": [100] * 6})
    path = tmp_path / f"MSFT.1d.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    bars = FileMarketData(tmp_path).bars("MSFT", timeline_for(spec))
    assert [b.time.date().isoformat() for b in bars] == [
        "2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27", "2024-12-30", "2024-12-31"]
    assert bars[3].close == bars[2].close and bars[3].volume == 0
    assert bars[0].open == Decimal("11.0")
    with pytest.raises(InvalidSpec, match="no 1d data file for NVDA"):
        FileMarketData(tmp_path).bars("NVDA", timeline_for(spec))


def test_minute_bars_from_the_stock_prices_table(store: Store) -> None:
    timeline = timeline_for(intraday_spec())
    bars = [PriceBar("AAPL", "1m", t, Decimal("100.5"), Decimal("101"), Decimal("100"),
                     Decimal("100.25"), Decimal(10)) for t in timeline.times if t.minute != 31]
    store.save_prices(bars)
    loaded = TableMarketData(store).bars("AAPL", timeline)
    assert len(loaded) == 390 and loaded[0].close == Decimal("100.25")
    with pytest.raises(InvalidSpec, match="no 1m bar for MSFT"):
        TableMarketData(store).bars("MSFT", timeline)
