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
ORDER_EVENTS = Counter("tickrun_runner_order_events_total",
                       "Order state changes: placed, triggered, filled, cancelled, expired, "
                       "refused", ["event"])
DECISIONS = Counter("tickrun_runner_decisions_total", "Decisions by outcome", ["outcome"])
TOKENS = Counter("tickrun_runner_llm_tokens_total",
                 "LLM tokens by direction: input, output, and cached (the part of input "
                 "served from the provider's prompt cache)", ["direction"])
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
                   "LLM cost in US dollars: what the provider reported (OpenRouter usage.cost), "
                   "else computed from the price table; answers with no price are not in it")
LLM_RATE_LIMIT_WAIT = Histogram(
    "tickrun_runner_llm_rate_limit_wait_seconds",
    "Time an LLM request waited for its slot under the provider key's shared rate limit",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30),
)
LLM_RATE_LIMIT_PAUSES = Counter(
    "tickrun_runner_llm_rate_limit_pauses_total",
    "Pauses of a provider key for every run on it, by reason: rate_limited (a 429) or "
    "exhausted (x-ratelimit-remaining-* reached 0)", ["reason"])
for _reason in ("rate_limited", "exhausted"):
    LLM_RATE_LIMIT_PAUSES.labels(_reason)  # both series exist (0) before the first pause
EVENTS_DROPPED = Counter("tickrun_runner_events_dropped_total",
                         "Events the event log could not take in time")
STORE_OUTAGE_RETRIES = Counter(
    "tickrun_runner_store_outage_retries_total",
    "Steps played again because the database did not answer")
LLM_SPEND = Counter(
    "tickrun_runner_llm_spend_dollars_total",
    "LLM cost of recorded decisions by model (its llm) and user", ["model", "user"])
BUDGET_STOPS = Counter(
    "tickrun_runner_budget_stops_total",
    "Runs ended by a limit: run_cost, run_tokens, daily_spend, or cost_unknown (a dollar "
    "limit with no price for the model)", ["limit"])
for _limit in ("run_cost", "run_tokens", "daily_spend", "cost_unknown"):
    BUDGET_STOPS.labels(_limit)  # every limit is a series (0) before its first stop
LIVE_DECISION_LAG = Histogram(
    "tickrun_runner_live_decision_lag_seconds",
    "Live runs: from a bar's close to its step done (the run's clock)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120, 300),
)
LIVE_MISSED_STEPS = Counter(
    "tickrun_runner_live_missed_steps_total",
    "Live runs: steps recorded as missed (past the decision deadline, or before a price)")
LIVE_GAPS = Counter("tickrun_runner_live_gaps_total",
                    "Live runs: minutes a symbol's provider sent no bar for")
