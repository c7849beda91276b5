"""Runner settings (TICKRUN_RUNNER_*): timeouts and budgets, never what a run does."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_RUNNER_", extra="ignore")

    decision_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A decision longer than this is a HOLD (timeout)")
    abandon_decision_seconds: float = Field(
        default=2.0, ge=0,
        description="After a stop request, how long an in-flight decision may still finish")
    stop_budget_seconds: float = Field(
        default=10.0, gt=0,
        description="From SIGTERM to exit; keep well under terminationGracePeriodSeconds (30)")
    stop_intent_wait_seconds: float = Field(
        default=3.0, ge=0,
        description="After SIGTERM, how long to wait for the run to say `stopping`; a "
                    "SIGTERM without it is a disruption (eviction, pod deleted): exit 1 and "
                    "let the Job's next pod resume")
    spend_check_seconds: float = Field(
        default=2.0, gt=0,
        description="How often an LLM run re-reads its spend and its user's spend of the "
                    "day (a stop comes as SIGTERM: runner.shutdown)")
    recent_trades: int = Field(default=20, ge=0, description="Trades shown to the decider")
    store_outage_seconds: float = Field(
        default=120.0, ge=0,
        description="How long a step waits for a database that does not answer (a restart, "
                    "a failover) before the runner exits 1 and the next attempt resumes")
    data_dir: Path = Field(default=Path("data"), description="Bars for the `files` source")
    metrics_port: int | None = Field(default=None, description="Serve /metrics when set")
    step_delay_seconds: float = Field(
        default=0.0, ge=0,
        description="Pause after each step (demos and tests that need a run to take time)")
    live_clock: str | None = Field(
        default=None,
        description="Live runs: a scaled clock START@EPOCH*SPEED for tests and drills "
                    "(runner.live.clock); unset: the wall clock")
    max_cost_usd: Decimal | None = Field(
        default=None, gt=0, description="A run's LLM dollar budget when neither its spec "
                                        "nor its model's parameters.budget set one")
    max_tokens: int | None = Field(
        default=None, ge=1, description="A run's LLM token budget (input + output) when "
                                        "neither its spec nor its model set one")
