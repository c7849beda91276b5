"""Bars from CSV or Parquet files in a data directory.

File name: <SYMBOL>.<interval>.csv or .parquet (interval 1m or 1d), columns time, open,
high, low, close, volume; time in ISO 8601 (UTC when no offset; dates for daily bars).
Parquet is read by fastparquet (any writer's files: pyarrow's, Spark's...), not pyarrow:
pyarrow would be most of the runner's image.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import fastparquet
import pandas as pd

from core.bars import Bar
from core.errors import InvalidSpec
from runner.marketdata.base import MarketData, Timeline, align


class FileMarketData(MarketData):
    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)

    def _frame(self, symbol: str, interval: str) -> pd.DataFrame:
        for suffix, reader in ((".parquet", _read_parquet), (".csv", pd.read_csv)):
            path = self.data_dir / f"{symbol}.{interval}{suffix}"
            if path.exists():
                frame = reader(path)
                frame.columns = [str(c).strip().lower() for c in frame.columns]
                return frame
        raise InvalidSpec(f"no {interval} data file for {symbol} in {self.data_dir}")

    def bars(self, symbol: str, timeline: Timeline) -> list[Bar]:
        frame = self._frame(symbol, timeline.interval)
        times = pd.to_datetime(frame["time"], utc=True)
        if timeline.interval == "1d":
            times = times.dt.normalize()
        found: dict[dt.datetime, Bar] = {}
        lo, hi = timeline.times[0], timeline.times[-1]
        for t, o, h, low, c, v in zip(times, frame["open"], frame["high"], frame["low"],
                                      frame["close"], frame.get("volume", 0), strict=False):
            when = t.to_pydatetime()
            if lo <= when <= hi:
                found[when] = Bar(when, _dec(o), _dec(h), _dec(low), _dec(c), _dec(v))
        return align(symbol, timeline, found)


def _read_parquet(path: Path) -> pd.DataFrame:
    # fastparquet's own reader: pandas' engine="fastparquet" is deprecated (pandas 3).
    with path.open("rb") as f:
        frame: pd.DataFrame = fastparquet.ParquetFile(f).to_pandas()
    return frame


def _dec(value: object) -> Decimal:
    return Decimal(str(value))
