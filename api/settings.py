"""API settings (TICKRUN_*): authentication, limits, live events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.kubernetes.settings import KubernetesSettings
from controller.settings import ControllerSettings
from core.environment import check_environment, read_settings
from core.settings import CoreSettings
from core.spend import SpendSettings


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
        default=4, ge=1, le=200,
        description="Threads per worker serving the synchronous routes' store calls (a "
                    "POST, a stop, a run's trades); at most TICKRUN_DB_POOL_SIZE. More "
                    "than a few per core only fight for the GIL: at 10 on 2 cores a POST's "
                    "p99 was 3-4 times longer, for no more throughput")
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

    @model_validator(mode="after")
    def _tokens_can_be_checked(self) -> ApiSettings:
        if self.auth_mode == "dev" and self.dev_token is None:
            raise ValueError("dev auth mode needs TICKRUN_DEV_TOKEN")
        if self.auth_mode == "jwt" and not (self.jwt_secret or self.jwks_url):
            raise ValueError("set TICKRUN_JWT_SECRET or TICKRUN_JWKS_URL to verify tokens")
        return self


@dataclass(frozen=True)
class ApiProcessSettings:
    """Everything the API process reads from TICKRUN_*, read once when it starts."""

    api: ApiSettings
    core: CoreSettings
    ctl: ControllerSettings
    spend: SpendSettings
    k8s: KubernetesSettings | None  # with the Kubernetes executor only

    @classmethod
    def from_env(cls) -> ApiProcessSettings:
        """SettingsError (one line) for an unknown, missing or invalid variable."""
        check_environment()
        ctl = read_settings(ControllerSettings)
        k8s = read_settings(KubernetesSettings) if ctl.executor == "kubernetes" else None
        return cls(api=read_settings(ApiSettings), core=read_settings(CoreSettings),
                   ctl=ctl, spend=read_settings(SpendSettings), k8s=k8s)
