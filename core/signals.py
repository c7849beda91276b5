"""Signals handled on a thread of their own, never inside the interrupted code.

Python runs a signal's handler in the main thread, between two bytecodes of whatever
that thread was doing, possibly while it holds a lock: inside `threading.Event.wait`
it holds the event's condition for a few bytecodes at a time. A handler that then sets
that event (or takes any lock the main thread may hold) waits for itself: the process
hangs for good, deaf to every later SIGTERM, until the kubelet's SIGKILL. A runner
stopping between steps (`stop.wait(step_delay)`) hit it under load.

So the handler only writes the signal's number to a pipe (os.write takes no Python
lock), and a daemon thread reads it and does the work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType


def on_signals(handle: Callable[[signal.Signals], None],
               signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Call `handle` on a daemon thread for each of `signals` received. Main thread only
    (as signal.signal)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def note(signum: int, frame: FrameType | None) -> None:
        # A pipe full of unread signals: one more adds nothing.
        with contextlib.suppress(BlockingIOError):
            os.write(write_fd, bytes((signum,)))

    def deliver() -> None:
        while received := os.read(read_fd, 64):
            for signum in received:
                handle(signal.Signals(signum))

    threading.Thread(target=deliver, daemon=True, name="signals").start()
    for sig in signals:
        signal.signal(sig, note)
