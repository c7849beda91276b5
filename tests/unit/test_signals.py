"""core.signals: a signal's work runs on a thread of its own, so it may take locks the
interrupted main thread holds."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> list[str]:
    """`python -c code`'s output words; it must exit 0 within 30 s."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()  # a hung process ignores SIGTERM
    assert proc.returncode == 0, err
    return out.split()


def test_each_signal_is_handled_on_the_signals_thread_in_order() -> None:
    code = (
        "import os, queue, signal, threading\n"
        "from core.signals import on_signals\n"
        "seen = queue.Queue()\n"
        "on_signals(lambda s: seen.put((s.name, threading.current_thread().name)))\n"
        "for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):\n"
        "    os.kill(os.getpid(), sig)\n"
        "    print(*seen.get(timeout=10))\n"
    )
    assert run_python(code) == ["SIGTERM", "signals", "SIGINT", "signals", "SIGTERM", "signals"]


def test_the_controller_stops_on_a_sigterm_while_its_loop_holds_the_stop_event() -> None:
    """The controller's loop waits on its stop event between passes; the old handler set
    that event inside the interrupted wait and hung the controller until SIGKILL."""
    code = (
        "import os, signal, threading\n"
        "from controller.__main__ import _stop_on_signals\n"
        "stop = threading.Event()\n"
        "_stop_on_signals(stop)\n"
        "with stop._cond:  # what Event.wait holds for a few bytecodes\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    for _ in range(10_000): pass\n"
        "print(stop.wait(10))\n"
    )
    assert run_python(code) == ["True"]
