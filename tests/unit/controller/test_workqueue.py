"""The keyed work queue: each run id once while it waits, delayed ids when due."""

from __future__ import annotations

import threading
import time

from controller.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_id_changed_many_times_while_waiting_is_taken_once() -> None:
    q = WorkQueue()
    for run_id in (3, 1, 3, 3, 2, 1):
        q.add(run_id)
    assert q.take() == [1, 2, 3]
    assert q.take() == []


def test_a_delayed_id_is_due_at_its_time_and_the_earliest_delay_wins() -> None:
    clock = Clock()
    q = WorkQueue(clock)
    q.add_after(5, 10.0)
    q.add_after(5, 4.0)  # earlier: wins
    q.add_after(5, 30.0)  # later: ignored
    assert q.scheduled(5) == 4.0 and q.take() == []
    clock.now += 4.0
    assert q.take() == [5]
    clock.now += 30.0
    assert q.take() == [] and q.scheduled(5) is None and len(q) == 0


def test_wait_returns_when_an_id_is_added_by_another_thread() -> None:
    q = WorkQueue()
    threading.Timer(0.1, q.add, (9,)).start()
    started = time.monotonic()
    assert q.wait(30.0) is True
    assert time.monotonic() - started < 5 and q.take() == [9]


def test_wait_returns_when_a_delayed_id_falls_due_or_it_is_interrupted() -> None:
    q = WorkQueue()
    q.add_after(1, 0.2)
    assert q.wait(30.0) is True and q.take() == [1]
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert q.wait(30.0, interrupted=stop.is_set) is False
    assert q.wait(0.05) is False  # nothing due, the timeout ends it
