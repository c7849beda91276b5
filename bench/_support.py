"""Shared by the benchmarks: throw-away servers, percentiles, the JSON last line."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def emit(result: dict[str, Any]) -> None:
    """The benchmark's answer: one JSON object, always the last line."""
    print(json.dumps(result, default=str))
