"""Event logs: ordered ids, exact resume after an id, blocking reads, progress."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from core.eventlog import EVENT_ID_PATTERN, EventLog, EventType
from core.eventlog.redis_log import RedisEventLog
from runner.events import EventPublisher


def test_resume_after_an_id_misses_nothing_and_repeats_nothing(event_log: EventLog) -> None:
    ids = [event_log.append(7, EventType.PROGRESS, {"step": i}) for i in range(10)]
    assert all(re.fullmatch(EVENT_ID_PATTERN, i) for i in ids)
    assert [event_log.resume_point(i) for i in ids] == ids
    everything = event_log.read(7)
    assert [e.id for e in everything] == ids
    after = event_log.read(7, ids[3])
    assert [e.data["step"] for e in after] == list(range(4, 10))
    assert event_log.read(8) == []  # another run's stream


def test_one_event_to_each_of_several_runs_lands_after_their_own(event_log: EventLog) -> None:
    earlier = {run_id: event_log.append(run_id, EventType.STATUS, {"status": "queued"})
               for run_id in (21, 22, 23)}
    event_log.append_each([(run_id, EventType.STATUS, {"status": "admitted", "run": run_id})
                           for run_id in (23, 21, 22)])
    for run_id, first in earlier.items():
        events = event_log.read(run_id)
        assert [e.data for e in events] == [{"status": "queued"},
                                            {"status": "admitted", "run": run_id}]
        assert events[0].id == first
        assert [e.data for e in event_log.read(run_id, first)] == [events[1].data]
    event_log.append_each([])  # a pass that admitted nobody
    assert event_log.read(24) == []


def test_a_blocking_read_wakes_on_append(event_log: EventLog) -> None:
    last = event_log.append(9, EventType.STATUS, {"status": "running"})
    writer = threading.Timer(0.2, lambda: event_log.append(9, EventType.RESULT, {"ok": True}))
    writer.start()
    began = time.monotonic()
    events = event_log.read(9, last, block_ms=5000)
    writer.join()
    assert [e.type for e in events] == [EventType.RESULT]
    assert time.monotonic() - began < 4


def test_progress_is_a_small_hash(event_log: EventLog) -> None:
    event_log.set_progress(3, {"step": 1, "total": 390})
    event_log.set_progress(3, {"step": 2, "equity": "100.5"})
    assert event_log.get_progress(3) == {"step": 2, "total": 390, "equity": "100.5"}
    event_log.delete(3)
    assert event_log.get_progress(3) == {}


def test_a_page_of_runs_progress_is_each_runs_progress(event_log: EventLog) -> None:
    """Several runs' progress at once (a list page's) is what each run's own read says:
    a run without progress reads empty, values keep their JSON types, and text with
    quotes, backslashes and non-ASCII survives; on an event loop (the API's) as well."""
    odd = 'a "quoted" \\ back\\slash, ünïcødé, </script>'
    event_log.set_progress(41, {"step": 7, "total": 390, "equity": "100.5",
                                "last_action": odd, "lag_seconds": None})
    event_log.set_progress(43, {"step": 0, "phase": "loading", "nested": {"a": [1, 2.5]}})
    ids = [43, 42, 41]
    each = {run_id: event_log.get_progress(run_id) for run_id in ids}
    assert each[42] == {} and each[41]["last_action"] == odd
    assert event_log.get_progress_many(ids) == each
    assert list(event_log.get_progress_many(ids)) == ids
    assert event_log.get_progress_many([]) == {}

    async def on_a_loop() -> dict[int, dict[str, Any]]:
        reads = event_log.async_progress()
        try:
            return await reads.get_progress_many(ids)
        finally:
            await reads.close()

    assert asyncio.run(on_a_loop()) == each


def test_events_wait_while_redis_is_down_and_arrive_in_order(redis_url: str,
                                                             redis_prefix: str) -> None:
    import redis

    from tests.servers import free_port

    down = RedisEventLog(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.2)
    publisher = EventPublisher(down, 5, retry_after_seconds=60)
    began = time.monotonic()
    for step in range(50):
        publisher.publish(EventType.PROGRESS, {"step": step})
    assert time.monotonic() - began < 2  # one failed attempt, then no waiting per event
    publisher._log = RedisEventLog(redis_url, prefix=redis_prefix)  # Redis is back
    publisher.finish(deadline_seconds=5)
    events = publisher._log.read(5)
    assert [e.data["step"] for e in events] == list(range(50))
    assert redis.Redis.from_url(redis_url).ttl(f"{redis_prefix}:run:5:events") > 0


def _append_now(log: RedisEventLog, run_id: int,
                batch: list[tuple[EventType, dict[str, Any]]],
                progress: dict[str, Any] | None = None) -> None:
    log.append_batch(run_id, batch, progress)


def _send_then_answer(log: RedisEventLog, run_id: int,
                      batch: list[tuple[EventType, dict[str, Any]]],
                      progress: dict[str, Any] | None = None) -> None:
    log.send_batch(run_id, batch, progress)()


@pytest.mark.parametrize("append", [_append_now, _send_then_answer])
def test_a_batch_lands_whole_with_its_progress_even_after_redis_forgot_its_script(
        redis_url: str, redis_prefix: str, append: Callable[..., None]) -> None:
    """A step's events and progress go out as one script; a restarted Redis has no
    script cache (as SCRIPT FLUSH leaves it), and the next batch still lands, in order,
    whether its answer is read at once or later (send_batch)."""
    import redis

    log = RedisEventLog(redis_url, prefix=redis_prefix)
    batch = [(EventType.DECISION, {"step": 0, "action": "hold"}),
             (EventType.PROGRESS, {"step": 1, "equity": "100.5"})]
    append(log, 11, batch, {"step": 1, "equity": "100.5"})
    redis.Redis.from_url(redis_url).script_flush()
    append(log, 11, [(EventType.TRADE, {"step": 1, "price": "10"})], {"step": 2})
    append(log, 11, [(EventType.LOG, {"message": "no progress"})])
    events = log.read(11)
    assert [(e.type, e.data) for e in events] == [
        *batch, (EventType.TRADE, {"step": 1, "price": "10"}),
        (EventType.LOG, {"message": "no progress"})]
    assert len({e.time for e in events[:2]}) == 1  # a batch's events share its time
    assert log.get_progress(11) == {"step": 2, "equity": "100.5"}
    log.close()


def test_a_batch_sent_on_a_connection_redis_closed_lands_once(redis_url: str,
                                                              redis_prefix: str) -> None:
    """The pooled connection send_batch takes was closed by Redis (a restart, a client
    kill): the answer finds it broken and the batch is sent again, landing once."""
    import redis

    log = RedisEventLog(redis_url, prefix=redis_prefix)
    log.append_batch(12, [(EventType.LOG, {"n": 0})])
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    answer = log.send_batch(12, [(EventType.LOG, {"n": 1})], {"step": 1})
    answer()
    assert [e.data["n"] for e in log.read(12)] == [0, 1]
    assert log.get_progress(12) == {"step": 1}
    log.close()


def test_a_step_whose_answer_was_lost_is_sent_again_first_and_in_order() -> None:
    """A step's batch goes out and its answer is read at the next step. Redis stops
    (SIGSTOP) with a step sent and unanswered, then dies: the answer fails, the step's
    events stay buffered (the next step's behind them) and, once a Redis answers on the
    port again, arrive in order, once each."""
    from tests.servers import start_redis

    server = start_redis()
    log = RedisEventLog(server.url(), timeout_seconds=0.3)
    publisher = EventPublisher(log, 21, retry_after_seconds=0.0)
    try:
        log.append_batch(99, [])  # the script loaded: a new Redis answers NOSCRIPT first
        publisher.publish_step([(EventType.DECISION, {"step": 0})], {"step": 0})
        assert [e.data for e in log.read(21)] == [{"step": 0}]  # sent, answer unread
        server.process.send_signal(signal.SIGSTOP)
        publisher.publish_step([(EventType.DECISION, {"step": 1})], {"step": 1})
        server.process.kill()  # step 1 never read by Redis
        server.process.wait(10)
        publisher.publish_step([(EventType.DECISION, {"step": 2})], {"step": 2})
        assert [d["step"] for _, d in publisher._pending] == [1, 2]  # 1 failed: kept, first
        server = start_redis(server.port, server.password)  # empty: a restarted Redis
        publisher.finish(deadline_seconds=5)
        # Step 0 had landed: it went with the dead Redis's memory (no persistence here).
        assert [e.data["step"] for e in log.read(21)] == [1, 2]
        assert log.get_progress(21) == {"step": 2}
        assert publisher.dropped == 0
    finally:
        log.close()
        server.stop()
