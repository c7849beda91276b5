"""Market data providers, each through its official client."""

from core.marketdata.providers.base import BarProvider, Interval, ProviderBar

__all__ = ["BarProvider", "Interval", "ProviderBar"]
