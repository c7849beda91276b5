"""Runner Prometheus metrics, served on an optional port (--metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DECISION_LATENCY = Histogram(
    "tickrun_runner_decision_latency_seconds", "Time a decider took for one step",
    ["decider"], buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
)
STEPS = Counter("tickrun_runner_steps_total", "Steps played", ["mode"])
STEP_DURATION = Histogram(
    "tickrun_runner_step_duration_seconds", "Whole step: decide, trade, record, checkpoint",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TRADES = Counter("tickrun_runner_trades_total", "Trades by outcome", ["outcome"])
DECISIONS = Counter("tickrun_runner_decisions_total", "Decisions by outcome", ["outcome"])
TOKENS = Counter("tickrun_runner_llm_tokens_total", "LLM tokens by direction", ["direction"])
LLM_REQUESTS = Counter(
    "tickrun_runner_llm_requests_total",
    "LLM HTTP attempts by outcome (ok, rate_limited, server_error, timeout, "
    "connection_error, client_error, stopped)", ["outcome"])
LLM_REQUEST_LATENCY = Histogram(
    "tickrun_runner_llm_request_latency_seconds", "One LLM HTTP attempt, answered or failed",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30),
)
LLM_TOOL_CALLS = Counter("tickrun_runner_llm_tool_calls_total", "Agent tool calls", ["tool"])
LLM_FAILURES = Counter(
    "tickrun_runner_llm_failures_total",
    "LLM decisions that became a HOLD, by reason (timeout, stopped, rate_limited, "
    "provider_error, connection_error, malformed_tool_call)", ["reason"])
LLM_COST = Counter("tickrun_runner_llm_cost_dollars_total",
                   "Cost the provider reported (OpenRouter usage.cost)")
EVENTS_DROPPED = Counter("tickrun_runner_events_dropped_total",
                         "Events the event log could not take in time")
STORE_OUTAGE_RETRIES = Counter(
    "tickrun_runner_store_outage_retries_total",
    "Steps played again because the database did not answer")
