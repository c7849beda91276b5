"""Stop requests: the handler, a real signal, and the watchdog's budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from runner.shutdown import EXIT_BUDGET_EXCEEDED, StopSignal, install_handlers
from tests.unit.test_signals import run_python


def test_stop_signal_records_the_first_request_only() -> None:
    stop = StopSignal()
    assert not stop.requested
    stop.request("SIGTERM")
    first = stop.received_at
    stop.request("SIGINT")
    assert stop.requested and stop.signal_name == "SIGTERM" and stop.received_at == first


def test_a_real_sigterm_sets_the_flag() -> None:
    stop = StopSignal()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        # The watchdog this starts would end the pytest process when its budget runs out:
        # a budget longer than any test session keeps it asleep.
        install_handlers(stop, budget_seconds=10**7)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5) and stop.signal_name == "SIGTERM"
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def test_the_watchdog_ends_a_process_that_overruns_its_budget() -> None:
    code = (
        "import os, signal, time\n"
        "from runner.shutdown import StopSignal, install_handlers\n"
        "install_handlers(StopSignal(), budget_seconds=0.5)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
    )
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
    assert proc.returncode == EXIT_BUDGET_EXCEEDED
    assert time.monotonic() - began < 10


def test_a_sigterm_while_the_main_thread_holds_the_stop_event_lock_still_stops() -> None:
    """The handler used to set the event inside the interrupted main thread; when that
    thread was inside Event.wait, holding the event's condition (as the loop does between
    steps), the set waited for itself and the process hung until SIGKILL."""
    code = (
        "import os, signal\n"
        "from runner.shutdown import StopSignal, install_handlers\n"
        "stop = StopSignal()\n"
        "install_handlers(stop, budget_seconds=10**7)\n"
        "with stop._event._cond:  # what Event.wait holds for a few bytecodes\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    for _ in range(10_000): pass  # the old handler ran here, and hung\n"
        "print(stop.wait(10), stop.signal_name)\n"
    )
    assert run_python(code) == ["True", "SIGTERM"]
