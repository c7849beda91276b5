"""Shared by the benchmarks: throw-away servers, percentiles, the JSON last line."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import Any

from core.lifecycle import Lifecycle
from core.records import Run
from core.store import Store

# Admission limits no benchmark reaches: a bench's runs are all admitted at once.
NO_LIMIT = 1_000_000


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def emit(result: dict[str, Any]) -> None:
    """The benchmark's answer: one JSON object, always the last line."""
    print(json.dumps(result, default=str))


def admit(store: Store, run_id: int) -> None:
    """Admit a queued run as the controller does, through the lifecycle (no limits: any
    other queued run of the bench's database is admitted with it)."""
    admitted = Lifecycle(store).admit(NO_LIMIT, NO_LIMIT)
    if run_id not in {r.id for r in admitted}:
        raise RuntimeError(f"run {run_id} was not admitted")


def start(store: Store, run_id: int, decider: str) -> Run:
    """Take an admitted run as a runner does: running, its attempt counted."""
    return Lifecycle(store).start(run_id, decider=decider)
