"""Market data providers, each through its official client."""

from core.marketdata.providers.base import BarProvider, Interval

__all__ = ["BarProvider", "Interval"]
