"""The admission choice on its own: oldest first, within each user's and the global
limit, skipping the runs that may not start yet, with no user holding back others."""

from __future__ import annotations

from core.admission import Queued, choose


def queue(*owners: str) -> list[Queued]:
    return [Queued(i + 1, user) for i, user in enumerate(owners)]


def test_oldest_first_within_the_per_user_limit() -> None:
    assert choose(queue("a", "a", "a", "b"), {}, per_user_limit=2, global_limit=20) == [1, 2, 4]


def test_active_runs_count_against_both_limits() -> None:
    runs = queue("a", "b", "c", "d")
    assert choose(runs, {"a": 2, "b": 1}, per_user_limit=2, global_limit=5) == [2, 3]
    assert choose(runs, {"x": 5}, per_user_limit=2, global_limit=5) == []
    assert choose(runs, {"x": 9}, per_user_limit=2, global_limit=5) == []  # over already


def test_a_user_at_their_limit_does_not_hold_back_the_runs_behind() -> None:
    assert choose(queue("a", "a", "a", "b", "c"), {"a": 1}, per_user_limit=1,
                  global_limit=3) == [4, 5]


def test_excluded_runs_are_passed_over_and_keep_no_place() -> None:
    assert choose(queue("a", "b", "c"), {}, per_user_limit=2, global_limit=2,
                  excluded={1}) == [2, 3]
