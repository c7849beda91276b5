"""Connection settings shared by every process, read from TICKRUN_* variables.

Only *where* things are lives here (database, Redis). What a run does is loaded from
the database by run id, never from the environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_", extra="ignore")

    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///.tickrun/tickrun.db"),
        description="postgresql://... (system of record) or sqlite:///path (embedded)",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://...; unset means the SQLite event log in the database file",
    )
    redis_key_prefix: str = Field(
        default="tickrun", pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Prefix of every Redis key, so installations can share one Redis",
    )
    db_pool_size: int = Field(default=10, ge=1, le=200, description="Connections per process")
    event_stream_maxlen: int = Field(
        default=100_000, ge=1000,
        description="Approximate cap per run stream; an intraday run writes ~1,200 events",
    )
    event_stream_ttl_seconds: int = Field(
        default=7 * 24 * 3600, ge=60,
        description="How long a finished run's stream stays for replay (Redis EXPIRE)",
    )
    redis_timeout_seconds: float = Field(
        default=0.5, gt=0,
        description="Socket timeout for event appends: a slow Redis must not stall a step",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The lowest level of the JSON log lines every process "
                                    "writes (DEBUG, INFO, WARNING or ERROR)")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
