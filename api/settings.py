"""API settings (TICKRUN_*): authentication, limits, live events."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_", extra="ignore")

    auth_mode: Literal["jwt", "dev"] = Field(
        default="jwt",
        description="jwt: Supabase access tokens; dev: also the `tickrun dev` token")
    jwt_secret: SecretStr | None = Field(
        default=None, description="Supabase project JWT secret (HS256 tokens)")
    jwks_url: str | None = Field(
        default=None, description="JWKS URL for asymmetric tokens (RS256/ES256)")
    jwt_audience: str = Field(default="authenticated", description="Required `aud` claim")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` claim, if set")
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    dev_token: SecretStr | None = Field(
        default=None, description="The bearer token `tickrun dev` accepts (dev mode only)")
    dev_user_id: str = Field(default="dev", description="The user the dev token acts as")
    operator_user_ids: list[str] = Field(
        default_factory=list,
        description="Users (token `sub`) who may spend the provider accounts' quota through "
                    "the API (POST /v1/data/fetches); JSON list. The dev token always may")
    request_threads: int = Field(
        default=10, ge=1, le=200,
        description="Threads serving store calls; match TICKRUN_DB_POOL_SIZE")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024,
                                description="Larger request bodies get 413")
    sse_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="Comment lines that keep proxies from closing streams")
    sse_end_check_seconds: float = Field(
        default=2.0, gt=0,
        description="How often a quiet stream checks whether its run ended without a final "
                    "event (Redis was down at the end)")
    delete_wait_seconds: float = Field(
        default=15.0, ge=0, description="DELETE of an active run waits this long for its stop")
    migrate_on_start: bool = Field(
        default=False, description="Apply migrations at start-up (dev); clusters use a Job")
    embedded_controller: bool | None = Field(
        default=None,
        description="Run the reconciler in the API process; default: with the local executor")
