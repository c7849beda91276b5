"""The one OHLCV bar: what a provider sends, what the runner plays, what orders fill on.

A bar is its start time (timezone-aware UTC) and its prices and volume as Decimals.
`filled` marks a bar the timeline made up for a minute with no trade (the last close
repeated, zero volume): the data quality a run's result reports.

The store's `stock_prices` rows (core.store.base.PriceBar) carry the series they belong
to (source, symbol, interval) besides a bar's fields: core.marketdata.sessions makes
them from bars and runner.marketdata.base.stored reads bars from them; those are the
only adapters. Providers parse their wire format (JSON) straight into bars.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Bar:
    time: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    filled: bool = False  # no trade that minute: the last close repeated, zero volume

    @classmethod
    def flat(cls, time: dt.datetime, price: Decimal) -> Bar:
        """A bar made up for a minute with no trade: one price, no volume, `filled`."""
        return cls(time, price, price, price, price, Decimal(0), filled=True)
