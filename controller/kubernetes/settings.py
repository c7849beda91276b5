"""Settings of the Kubernetes executor and controller (TICKRUN_K8S_*).

Each value says what it is for and why its default is what it is; secrets are only
ever *names* of Secrets and keys, which the Job references with secretKeyRef.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecretRef(BaseModel):
    name: str = Field(description="Secret name in the runs' namespace")
    key: str = Field(description="Key inside the Secret")
    optional: bool = False


class KubernetesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_K8S_", env_nested_delimiter="__",
                                      extra="ignore")

    namespace: str = Field(default="tickrun", description="Where run Jobs live")
    kubeconfig: str | None = Field(
        default=None, description="Outside a cluster; in a pod the service account is used")
    runner_image: str = Field(default="tickrun/runner:dev")
    image_pull_policy: str = Field(default="IfNotPresent")
    backoff_limit: int = Field(
        default=3, ge=0, description="Pod retries for crashes; disruptions do not count")
    active_deadline_seconds: int = Field(
        default=8 * 3600, ge=60,
        description="Hard bound on a run; a US session is 6.5 h at most")
    ttl_seconds_after_finished: int = Field(
        default=3600, ge=0, description="Finished Jobs stay this long for kubectl and logs")
    termination_grace_period_seconds: int = Field(
        default=30, ge=5, description="SIGTERM to SIGKILL; the runner's stop budget is 10 s")
    resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "256Mi"},
                                 "limits": {"cpu": "1", "memory": "1Gi"}})
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    database_secret: SecretRef = Field(
        default=SecretRef(name="tickrun-database", key="url"),
        description="Secret holding TICKRUN_DATABASE_URL")
    redis_secret: SecretRef | None = Field(
        default=SecretRef(name="tickrun-redis", key="url"),
        description="Secret holding TICKRUN_REDIS_URL")
    llm_secret: SecretRef | None = Field(
        default=SecretRef(name="tickrun-llm", key="api-key", optional=True),
        description="Secret holding the LLM provider's API key")
    # Market data keys (core/marketdata/settings.py): optional, so a cluster without them
    # still runs synthetic and already cached runs. Their non-secret companions
    # (TICKRUN_POLYGON_BASE_URL, TICKRUN_ALPACA_FEED...) come through runner_env.
    polygon_api_key_secret: SecretRef | None = Field(
        default=SecretRef(name="tickrun-market-data", key="polygon-api-key", optional=True),
        description="Secret holding TICKRUN_POLYGON_API_KEY (Massive, formerly Polygon.io)")
    alpaca_api_key_id_secret: SecretRef | None = Field(
        default=SecretRef(name="tickrun-market-data", key="alpaca-api-key-id", optional=True),
        description="Secret holding TICKRUN_ALPACA_API_KEY_ID (Alpaca market data)")
    alpaca_api_secret_key_secret: SecretRef | None = Field(
        default=SecretRef(name="tickrun-market-data", key="alpaca-api-secret-key",
                          optional=True),
        description="Secret holding TICKRUN_ALPACA_API_SECRET_KEY (Alpaca market data)")
    mcp_secret: str | None = Field(
        default=None,
        description="Secret whose keys (each named MCP_*) become run pods' environment: the "
                    "header values of the MCP servers models name (envFrom, optional)")
    broker_secret_prefix: str = Field(
        default="tickrun-broker-",
        description="A live run on a paper account reads its user's keys "
                    "(TICKRUN_BROKER_ALPACA_KEY_ID, TICKRUN_BROKER_ALPACA_SECRET_KEY) from "
                    "the Secret <prefix><user id> (lower case), mounted into that user's "
                    "runner pods only")
    runner_env: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret runner settings (TICKRUN_RUNNER_*, TICKRUN_LLM_BASE_URL, "
                    "TICKRUN_POLYGON_BASE_URL, TICKRUN_ALPACA_FEED, TICKRUN_MARKET_DATA_*...)")
    runner_metrics_port: int | None = Field(default=9102)
    unschedulable_timeout_seconds: float = Field(
        default=120.0, gt=0,
        description="A pod unschedulable this long fails its run (Unschedulable)")
    container_start_timeout_seconds: float = Field(
        default=120.0, gt=0,
        description="A run pod whose container cannot start this long (an image pull or "
                    "container creation failing, which the kubelet retries) fails its run")
    watch_timeout_seconds: int = Field(
        default=300, ge=10, description="Server-side watch timeout; the watch then resumes")
    watch_inactivity_seconds: float = Field(
        default=90.0, gt=0,
        description="Silence after which a watch is presumed dead (bookmarks come ~60 s)")
    lease_name: str = Field(default="tickrun-controller")
    lease_duration_seconds: float = Field(default=15.0, gt=1)
    lease_renew_seconds: float = Field(default=5.0, gt=0)
