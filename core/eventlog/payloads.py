"""The data of the events every writer appends (the lifecycle, the runner, the API's
stand-in for a lost final event), built in one place so a follower meets one shape.

A `status` event: the run's status, why (or None), and what the writer adds (the
runner's attempt, decider and data source). A `result` event, always the last: the
final status, why, and the result (None for a run deleted before its end).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from core.status import RunStatus


class StatusData(TypedDict, total=False):
    status: str
    reason: str | None


class ResultData(TypedDict):
    status: str
    reason: str | None
    result: dict[str, Any] | None


def status_data(status: RunStatus, reason: str | None,
                details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data: StatusData = {"status": status.value, "reason": reason}
    return {**data, **(details or {})}


def result_data(status: RunStatus | str, reason: str | None,
                result: dict[str, Any] | None) -> dict[str, Any]:
    """`status` is a word of its own ("deleted") only where the run is gone."""
    data: ResultData = {"status": status.value if isinstance(status, RunStatus) else status,
                        "reason": reason, "result": result}
    return dict(data)
