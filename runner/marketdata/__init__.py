"""Bars for a run's timeline from one of several providers, with no look-ahead."""

from runner.marketdata.base import MarketData, Timeline, timeline_for
from runner.marketdata.factory import market_data_for

__all__ = ["MarketData", "Timeline", "market_data_for", "timeline_for"]
