"""The research provider a run names, built from the market data settings: the same
keys, base URLs and fetch deadline as the bar providers (Alpaca's news is served by its
market data host, `alpaca_data_url`)."""

from __future__ import annotations

from core.errors import ProviderRefused
from core.marketdata.providers.factory import alpaca_keys, polygon_key
from core.marketdata.settings import MarketDataSettings, ProviderName
from core.research.providers.base import ResearchProvider


def build_research_provider(name: ProviderName, settings: MarketDataSettings
                            ) -> ResearchProvider:
    """The provider `name`, or ProviderRefused naming the settings still to set."""
    deadline = settings.market_data_fetch_deadline_seconds
    # Each client loads only when used (alpaca-py alone takes ~0.5 s to import).
    if name == "polygon":
        from core.research.providers.polygon import PolygonResearch

        return PolygonResearch(polygon_key(settings), settings.polygon_base_url, deadline)
    if name == "alpaca":
        from core.research.providers.alpaca import AlpacaResearch

        key_id, secret = alpaca_keys(settings)
        return AlpacaResearch(key_id, secret, settings.alpaca_data_url, deadline)
    raise ProviderRefused(f"unknown research provider {name!r}: polygon or alpaca")
