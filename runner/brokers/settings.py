"""Broker settings (TICKRUN_BROKER_*): the keys of a live run's paper account.

They belong to the run's user: on the cluster they come only from that user's Secret
(`<TICKRUN_K8S_BROKER_SECRET_PREFIX><user>`), mounted only into that user's runner
pods; with `tickrun dev`, from the environment of the one local user. SecretStr: never
logged, never in events, never in a Job spec.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_BROKER_", extra="ignore")

    alpaca_key_id: SecretStr | None = Field(
        default=None, description="The user's Alpaca paper trading key id")
    alpaca_secret_key: SecretStr | None = Field(
        default=None, description="The user's Alpaca paper trading secret key")
    alpaca_url: str | None = Field(
        default=None, description="Alpaca's paper trading API; unset: "
                                  "https://paper-api.alpaca.markets")
    alpaca_stream_url: str | None = Field(
        default=None, description="Alpaca's paper trade-updates stream; unset: "
                                  "wss://paper-api.alpaca.markets/stream")
    fill_wait_seconds: float = Field(
        default=5.0, gt=0, le=60,
        description="How long a market order sent to the broker may take to fill; the "
                    "part not filled by then is cancelled, so each step's trades are final")

    @property
    def alpaca_configured(self) -> bool:
        return self.alpaca_key_id is not None and self.alpaca_secret_key is not None
