"""Every TICKRUN_* variable a tickrun process or tool reads, checked when each starts.

Each settings class reads only its own names, so a misspelt variable used to be ignored
in silence. The processes of one installation share an environment (`tickrun dev`
starts its runners with its own; the chart gives the API and the controller one), so
a start knows the names of them all: the list is here, in core, where every entry point
reaches it, and a test keeps it equal to the settings classes' fields.

A bad setting fails the start in one line naming the variable and what it needs
(`SettingsError`), never a traceback from deep inside a start-up.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from core.exitcodes import EXIT_NO_RETRY

PREFIX = "TICKRUN_"

# The fields of every settings class (core, runner, controller, api), by variable.
SETTINGS = frozenset({
    # core.settings.CoreSettings
    "TICKRUN_DATABASE_URL", "TICKRUN_REDIS_URL", "TICKRUN_REDIS_KEY_PREFIX",
    "TICKRUN_DB_POOL_SIZE", "TICKRUN_EVENT_STREAM_MAXLEN",
    "TICKRUN_EVENT_STREAM_TTL_SECONDS", "TICKRUN_REDIS_TIMEOUT_SECONDS",
    "TICKRUN_LOG_LEVEL",
    # core.spend.SpendSettings
    "TICKRUN_USER_DAILY_COST_USD",
    # core.marketdata.settings.MarketDataSettings
    "TICKRUN_POLYGON_API_KEY", "TICKRUN_POLYGON_BASE_URL", "TICKRUN_ALPACA_API_KEY_ID",
    "TICKRUN_ALPACA_API_SECRET_KEY", "TICKRUN_ALPACA_DATA_URL", "TICKRUN_ALPACA_FEED",
    "TICKRUN_MARKET_DATA_PROVIDER", "TICKRUN_MARKET_DATA_FETCH_DEADLINE_SECONDS",
    "TICKRUN_ALPACA_STREAM_URL", "TICKRUN_POLYGON_STREAM_HOST", "TICKRUN_POLYGON_STREAM_SECURE",
    "TICKRUN_LIVE_BARS", "TICKRUN_LIVE_POLL_SECONDS",
    # runner.settings.RunnerSettings
    "TICKRUN_RUNNER_DECISION_TIMEOUT_SECONDS", "TICKRUN_RUNNER_ABANDON_DECISION_SECONDS",
    "TICKRUN_RUNNER_STOP_BUDGET_SECONDS", "TICKRUN_RUNNER_STOP_INTENT_WAIT_SECONDS",
    "TICKRUN_RUNNER_SPEND_CHECK_SECONDS", "TICKRUN_RUNNER_RECENT_TRADES",
    "TICKRUN_RUNNER_STORE_OUTAGE_SECONDS", "TICKRUN_RUNNER_DATA_DIR",
    "TICKRUN_RUNNER_METRICS_PORT", "TICKRUN_RUNNER_STEP_DELAY_SECONDS",
    "TICKRUN_RUNNER_MAX_COST_USD", "TICKRUN_RUNNER_MAX_TOKENS", "TICKRUN_RUNNER_LIVE_CLOCK",
    # runner.brokers.settings.BrokerSettings
    "TICKRUN_BROKER_ALPACA_KEY_ID", "TICKRUN_BROKER_ALPACA_SECRET_KEY",
    "TICKRUN_BROKER_ALPACA_URL", "TICKRUN_BROKER_ALPACA_STREAM_URL",
    "TICKRUN_BROKER_FILL_WAIT_SECONDS",
    # runner.llm_settings.LlmSettings
    "TICKRUN_LLM_PROVIDER", "TICKRUN_LLM_BASE_URL", "TICKRUN_LLM_API_KEY",
    "TICKRUN_LLM_REQUEST_TIMEOUT_SECONDS", "TICKRUN_LLM_MAX_RETRIES",
    "TICKRUN_LLM_RETRY_INITIAL_SECONDS", "TICKRUN_LLM_RETRY_MAX_SECONDS",
    "TICKRUN_LLM_DECISION_TIMEOUT_SECONDS", "TICKRUN_LLM_REQUESTS_PER_MINUTE",
    "TICKRUN_LLM_TOKENS_PER_MINUTE", "TICKRUN_LLM_RATE_LIMIT_BURST_SECONDS",
    "TICKRUN_LLM_APP_TITLE", "TICKRUN_LLM_PRICES", "TICKRUN_LLM_MCP_ALLOWED_HOSTS",
    # controller.settings.ControllerSettings
    "TICKRUN_EXECUTOR", "TICKRUN_PER_USER_LIMIT", "TICKRUN_GLOBAL_LIMIT",
    "TICKRUN_STOP_GRACE_SECONDS", "TICKRUN_LOCAL_BACKOFF_LIMIT", "TICKRUN_LOCAL_LOG_DIR",
    "TICKRUN_RESYNC_SECONDS", "TICKRUN_LOST_GRACE_SECONDS",
    # controller.kubernetes.settings.KubernetesSettings
    "TICKRUN_K8S_NAMESPACE", "TICKRUN_K8S_KUBECONFIG", "TICKRUN_K8S_RUNNER_IMAGE",
    "TICKRUN_K8S_IMAGE_PULL_POLICY", "TICKRUN_K8S_BACKOFF_LIMIT",
    "TICKRUN_K8S_ACTIVE_DEADLINE_SECONDS", "TICKRUN_K8S_TTL_SECONDS_AFTER_FINISHED",
    "TICKRUN_K8S_TERMINATION_GRACE_PERIOD_SECONDS", "TICKRUN_K8S_RESOURCES",
    "TICKRUN_K8S_NODE_SELECTOR", "TICKRUN_K8S_TOLERATIONS", "TICKRUN_K8S_DATABASE_SECRET",
    "TICKRUN_K8S_REDIS_SECRET", "TICKRUN_K8S_LLM_SECRET",
    "TICKRUN_K8S_POLYGON_API_KEY_SECRET", "TICKRUN_K8S_ALPACA_API_KEY_ID_SECRET",
    "TICKRUN_K8S_ALPACA_API_SECRET_KEY_SECRET", "TICKRUN_K8S_RUNNER_ENV",
    "TICKRUN_K8S_MCP_SECRET", "TICKRUN_K8S_BROKER_SECRET_PREFIX",
    "TICKRUN_K8S_RUNNER_METRICS_PORT", "TICKRUN_K8S_UNSCHEDULABLE_TIMEOUT_SECONDS",
    "TICKRUN_K8S_CONTAINER_START_TIMEOUT_SECONDS", "TICKRUN_K8S_WATCH_TIMEOUT_SECONDS",
    "TICKRUN_K8S_WATCH_INACTIVITY_SECONDS", "TICKRUN_K8S_LEASE_NAME",
    "TICKRUN_K8S_LEASE_DURATION_SECONDS", "TICKRUN_K8S_LEASE_RENEW_SECONDS",
    # api.settings.ApiSettings
    "TICKRUN_AUTH_MODE", "TICKRUN_JWT_SECRET", "TICKRUN_JWKS_URL", "TICKRUN_JWT_AUDIENCE",
    "TICKRUN_JWT_ISSUER", "TICKRUN_JWT_LEEWAY_SECONDS", "TICKRUN_DEV_TOKEN",
    "TICKRUN_DEV_USER_ID", "TICKRUN_OPERATOR_USER_IDS", "TICKRUN_REQUEST_THREADS",
    "TICKRUN_MAX_BODY_BYTES", "TICKRUN_SSE_HEARTBEAT_SECONDS",
    "TICKRUN_SSE_END_CHECK_SECONDS", "TICKRUN_DELETE_WAIT_SECONDS",
    "TICKRUN_MIGRATE_ON_START", "TICKRUN_EMBEDDED_CONTROLLER",
})

# Read by the tools around the services, which share their environment.
TOOLS = frozenset({
    "TICKRUN_API_URL", "TICKRUN_TOKEN",  # the CLI: which API, as whom
    "TICKRUN_SKIP_CLUSTER",  # make test without the Kubernetes tier
    "TICKRUN_CLUSTER_LOCKED", "TICKRUN_CLUSTER_STATE", "TICKRUN_KUBECONFIG",  # test cluster
    "TICKRUN_FAULT_STORM_RUNS",  # the size of a cluster fault test
})

KNOWN = SETTINGS | TOOLS


class SettingsError(Exception):
    """A setting that is unknown, missing or invalid: one line, for a person."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """TICKRUN_* names no tickrun process reads (a nested `NAME__part` of a known
    dict or object setting is known)."""
    return sorted(name for name in environ
                  if name.startswith(PREFIX) and name.split("__")[0] not in KNOWN)


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise SettingsError naming each unknown TICKRUN_* variable and its nearest
    known name."""
    unknown = unknown_variables(os.environ if environ is None else environ)
    if unknown:
        raise SettingsError("; ".join(_unknown(name) for name in unknown))


def _unknown(name: str) -> str:
    near = difflib.get_close_matches(name, sorted(KNOWN), n=1, cutoff=0.6)
    return f"unknown setting {name}" + (f" (did you mean {near[0]}?)" if near else "")


S = TypeVar("S", bound=BaseSettings)


def read_settings(cls: type[S], **values: Any) -> S:
    """The settings from the environment; SettingsError names each variable that is
    missing or invalid and what it needs, in one line."""
    try:
        return cls(**values)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        raise SettingsError("; ".join(_problem(prefix, e) for e in exc.errors())) from None


def _problem(prefix: str, error: Any) -> str:
    """The variable and what it needs; never the value given (it may be a secret)."""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    loc = error.get("loc") or ()
    if not loc:  # a rule between settings: its message names them
        return message
    return f"{(prefix + '__'.join(str(part) for part in loc)).upper()}: {message}"


T = TypeVar("T")


def settings_or_exit(component: str, read: Callable[[], T]) -> T:
    """`read()` at a process's start: a SettingsError is one line on stderr and exit 78
    (EX_CONFIG: starting again cannot help; a Job does not retry it)."""
    try:
        return read()
    except SettingsError as exc:
        print(f"tickrun-{component}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_NO_RETRY) from None
