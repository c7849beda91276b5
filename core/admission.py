"""Which queued runs to admit now: a pure choice, decided in the store's admission
transaction with the counts it read there.

Oldest first (Kueue's StrictFIFO within a user, BestEffortFIFO across users): a user at
their limit does not hold back the runs of others behind theirs, and the global limit
counts every active run (admitted, running, stopping).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Queued:
    run_id: int
    user_id: str


def choose(queued: Sequence[Queued], active_per_user: Mapping[str, int], *,
           per_user_limit: int, global_limit: int,
           excluded: Collection[int] = ()) -> list[int]:
    """The ids to admit, in `queued`'s order (oldest first). `excluded`: runs that may
    not start yet (no workload, held for spend)."""
    free = global_limit - sum(active_per_user.values())
    per_user = dict(active_per_user)
    chosen: list[int] = []
    for run in queued:
        if len(chosen) >= free:
            break
        if run.run_id in excluded or per_user.get(run.user_id, 0) >= per_user_limit:
            continue
        per_user[run.user_id] = per_user.get(run.user_id, 0) + 1
        chosen.append(run.run_id)
    return chosen
