"""Where market data comes from (TICKRUN_POLYGON_*, TICKRUN_ALPACA_*, TICKRUN_MARKET_DATA_*).

Keys are SecretStr: never logged, never stored, never in a Job spec (the chart passes
them to pods through secretKeyRef). Base URLs default to the providers' own; tests
point them at local servers that speak the same protocol.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["polygon", "alpaca"]


class MarketDataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_", extra="ignore")

    polygon_api_key: SecretStr | None = Field(
        default=None, description="Massive (formerly Polygon.io) API key")
    polygon_base_url: str = Field(
        default="https://api.massive.com", description="Massive REST base URL")
    alpaca_api_key_id: SecretStr | None = Field(
        default=None, description="Alpaca API key id (market data)")
    alpaca_api_secret_key: SecretStr | None = Field(
        default=None, description="Alpaca API secret key")
    alpaca_data_url: str = Field(
        default="https://data.alpaca.markets", description="Alpaca market data base URL")
    alpaca_feed: Literal["iex", "sip"] = Field(
        default="iex", description="Alpaca feed: iex (free plans) or sip (all US exchanges)")
    alpaca_stream_url: str | None = Field(
        default=None, description="Alpaca's market data stream (live runs); unset: "
                                  "wss://stream.data.alpaca.markets/v2/<feed>")
    polygon_stream_host: str = Field(
        default="socket.massive.com",
        description="Massive's stream host (live runs): socket.massive.com (real time) or "
                    "delayed.massive.com (15 minutes late)")
    polygon_stream_secure: bool = Field(
        default=True, description="wss (true) or ws to the Massive stream host")
    live_bars: Literal["stream", "poll"] = Field(
        default="stream",
        description="How a live run gets its minute bars: stream (the provider's "
                    "websocket) or poll (its REST bars endpoint every live_poll_seconds, "
                    "for a deployment where no stream is configured)")
    live_poll_seconds: float = Field(
        default=5.0, gt=0,
        description="With live_bars=poll: seconds (of the run's clock) between two polls "
                    "of the latest closed minutes; each minute's end is polled too")
    market_data_provider: ProviderName | None = Field(
        default=None,
        description="The provider of runs that name none; unset: polygon when its key is "
                    "set, else alpaca when its keys are set")
    market_data_fetch_deadline_seconds: float = Field(
        default=300.0, gt=0,
        description="How long one fetch may spend on retries (429 with Retry-After, 5xx) "
                    "before the run's attempt gives up (a later attempt resumes from the "
                    "days already cached)")

    def configured(self) -> list[ProviderName]:
        """The providers whose keys are set."""
        names: list[ProviderName] = []
        if _set(self.polygon_api_key):
            names.append("polygon")
        if _set(self.alpaca_api_key_id) and _set(self.alpaca_api_secret_key):
            names.append("alpaca")
        return names

    def default_provider(self) -> ProviderName | None:
        """The provider of runs that name none, or None when no provider is configured."""
        configured = self.configured()
        if self.market_data_provider is not None:
            return self.market_data_provider if self.market_data_provider in configured else None
        return configured[0] if configured else None


def _set(key: SecretStr | None) -> bool:
    """A key that is there and not blank (an empty Kubernetes Secret value is no key)."""
    return key is not None and bool(key.get_secret_value().strip())
