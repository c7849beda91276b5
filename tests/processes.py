"""This test process's own children, found in /proc: tests that kill a runner must not
hit another parallel test process's runner of the same run id (ids restart with each
fresh database)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def descendants(pid: int | None = None) -> list[int]:
    """Every live process below `pid` (default: this one), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name is in parentheses and may hold spaces: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid or os.getpid()]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def kill_runner(run_id: int, sig: signal.Signals = signal.SIGKILL) -> int:
    """Signals this test's runner of the run (`... runner --run-id N`); its pid."""
    for pid in descendants():
        if command_line(pid)[-2:] == ["--run-id", str(run_id)]:
            os.kill(pid, sig)
            return pid
    raise LookupError(f"no runner of run {run_id} below process {os.getpid()}")
