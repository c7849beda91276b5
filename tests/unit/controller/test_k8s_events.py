"""The Event recorder sends from its own thread: a slow API server never holds the
reconcile that records (an admission, a stop), a flood drops and counts, close drains."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from controller import telemetry
from controller.kubernetes.events import EventRecorder


class SlowEvents:
    """Where CoreV1Api.create_namespaced_event would go: each call takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sent: list[Any] = []
        self.release = threading.Event()

    def create_namespaced_event(self, namespace: str, body: Any, **kw: Any) -> Answer:
        self.release.wait(self.seconds)
        self.sent.append(body)
        return Answer()


class Answer:
    """An unread answer (`_preload_content=False`), as controller.kubernetes.api.unread
    reads and releases it."""

    def read(self) -> bytes:
        return b"{}"

    def release_conn(self) -> None:
        pass


def recorder(core: SlowEvents, capacity: int = 100) -> EventRecorder:
    return EventRecorder(core, namespace="ns", component="tickrun-controller",  # type: ignore[arg-type]
                         instance="c1", capacity=capacity)


def test_recording_does_not_wait_for_the_api_server_and_keeps_the_order() -> None:
    core = SlowEvents(0.2)
    events = recorder(core)
    began = time.monotonic()
    for i in range(5):
        events.record({"metadata": {"name": f"tickrun-run-{i}", "uid": f"u{i}"}}, "Admitted",
                      "admitted")
    assert time.monotonic() - began < 0.1
    core.release.set()
    events.close()
    assert [e.involved_object.name for e in core.sent] == [f"tickrun-run-{i}" for i in range(5)]
    assert core.sent[0].involved_object.uid == "u0" and core.sent[0].reason == "Admitted"


def test_the_object_is_looked_up_on_the_sender_and_its_time_is_the_records() -> None:
    core, looked_up_on = SlowEvents(0.3), []
    events = recorder(core)
    before = dt.datetime.now(dt.UTC)

    def find() -> dict[str, Any]:
        looked_up_on.append(threading.current_thread().name)
        return {"metadata": {"name": "tickrun-run-7"}}
    events.record(find, "StopRequested", "x" * 2000, warning=True)
    events.close()
    [sent] = core.sent
    assert looked_up_on == ["k8s-events"]
    # Stamped when recorded, not when sent (0.3 s later).
    assert before <= sent.first_timestamp <= before + dt.timedelta(seconds=0.2)
    assert sent.type == "Warning" and len(sent.message) == 1000


def test_a_flood_drops_and_counts_and_close_gives_up_after_its_timeout() -> None:
    core = SlowEvents(10)  # the API server hangs
    events = recorder(core, capacity=3)
    dropped = telemetry.EVENTS_DROPPED._value.get()
    for i in range(10):  # one in flight, three queued, six dropped
        events.record({"metadata": {"name": f"r{i}"}}, "Admitted", "admitted")
        time.sleep(0.01)
    assert telemetry.EVENTS_DROPPED._value.get() - dropped == 6
    began = time.monotonic()
    events.close(timeout=0.3)
    assert time.monotonic() - began < 1.5
    core.release.set()
