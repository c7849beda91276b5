"""Settings of the reconciler and the executor choice (TICKRUN_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_", extra="ignore")

    executor: Literal["local", "kubernetes"] = Field(
        default="local",
        description="local: one subprocess per run (embedded default); kubernetes: a Job")
    per_user_limit: int = Field(
        default=2, ge=1, le=1000, description="Active runs per user; more wait in the queue")
    global_limit: int = Field(
        default=20, ge=1, le=100_000, description="Active runs in the whole installation")
    stop_grace_seconds: float = Field(
        default=30.0, gt=0, description="SIGTERM to SIGKILL for the local executor")
    local_backoff_limit: int = Field(
        default=2, ge=0, description="Local executor: restarts after a retryable runner exit")
    local_log_dir: Path = Field(
        default=Path(".tickrun/logs"), description="Local executor: one log file per run")
    resync_seconds: float = Field(
        default=300.0, gt=0,
        description="A full pass over every active run even without a change seen (an "
                    "informer's resync); changes are handled as they come, from the work "
                    "queue")
    lost_grace_seconds: float = Field(
        default=30.0, ge=0,
        description="An admitted run with no workload this long is resubmitted")
