"""The provider a run names, built from the settings (keys stay SecretStr throughout)."""

from __future__ import annotations

from pydantic import SecretStr

from core.errors import ProviderRefused
from core.marketdata.providers.base import BarProvider
from core.marketdata.settings import MarketDataSettings, ProviderName


def build_provider(name: ProviderName, settings: MarketDataSettings) -> BarProvider:
    """The provider `name`, or ProviderRefused naming the settings still to set."""
    deadline = settings.market_data_fetch_deadline_seconds
    # Each client loads only when used (alpaca-py alone takes ~0.5 s to import).
    if name == "polygon":
        from core.marketdata.providers.polygon import PolygonProvider

        return PolygonProvider(polygon_key(settings), settings.polygon_base_url, deadline)
    if name == "alpaca":
        from core.marketdata.providers.alpaca import AlpacaProvider

        key_id, secret = alpaca_keys(settings)
        return AlpacaProvider(key_id, secret, settings.alpaca_data_url, settings.alpaca_feed,
                              deadline)
    raise ProviderRefused(f"unknown market data provider {name!r}: polygon or alpaca")


def polygon_key(settings: MarketDataSettings) -> SecretStr:
    """Polygon's API key, or ProviderRefused naming its setting (also for research)."""
    return _required("polygon", [("TICKRUN_POLYGON_API_KEY", settings.polygon_api_key)])[0]


def alpaca_keys(settings: MarketDataSettings) -> tuple[SecretStr, SecretStr]:
    """Alpaca's key id and secret key, or ProviderRefused naming the settings still to
    set (also for research)."""
    key_id, secret = _required("alpaca", [
        ("TICKRUN_ALPACA_API_KEY_ID", settings.alpaca_api_key_id),
        ("TICKRUN_ALPACA_API_SECRET_KEY", settings.alpaca_api_secret_key)])
    return key_id, secret


def _required(name: str, values: list[tuple[str, SecretStr | None]]) -> list[SecretStr]:
    """The values, all set and non-blank (an empty Kubernetes secret is no key)."""
    missing = [env for env, value in values
               if value is None or not value.get_secret_value().strip()]
    if missing:
        raise ProviderRefused(f"{name} is not configured: set {' and '.join(missing)}")
    return [value for _, value in values if value is not None]
