"""The local executor: one `python -m runner` subprocess per run.

It does for the embedded default what a Job does in the cluster: a workload is created
suspended and started on admission; an exit the retry policy retries (core.exitcodes)
is replaced at once, up to a backoff limit, and the new process resumes from the
checkpoint; stop sends SIGTERM, then SIGKILL after the grace period, as the kubelet does.

Runners outlive a server that is killed. Each runner's pid is written beside its log;
a new server adopts a runner that is still alive instead of starting a second one.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.executor import Executor
from controller.workload import WorkloadState
from core.exitcodes import EXIT_NO_RETRY, exit_verdict
from core.records import Run

log = logging.getLogger(__name__)


class AdoptedRunner:
    """A runner started by an earlier server: not our child, so its exit code is lost;
    its identity is its pid and the kernel's start time of that pid (no reuse)."""

    def __init__(self, pid: int, started: str) -> None:
        self.pid, self.started = pid, started

    def poll(self) -> int | None:
        return None if process_start_time(self.pid) == self.started else 0

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


Process = subprocess.Popen[bytes] | AdoptedRunner


@dataclass
class _Workload:
    run_id: int
    started: bool = False
    process: Process | None = None
    restarts: int = 0
    stopping: bool = False
    exit_code: int | None = None  # of the last process, once it ended for good
    kill_timer: threading.Timer | None = field(default=None, repr=False)


class LocalExecutor(Executor):
    name = "local"
    gone_means_stopped = False

    def __init__(self, runner_env: Mapping[str, str], *, log_dir: Path,
                 grace_seconds: float = 30.0, backoff_limit: int = 2) -> None:
        super().__init__()
        self._env = {**os.environ, **runner_env}
        self._log_dir = log_dir
        self._grace = grace_seconds
        self._backoff_limit = backoff_limit
        self._workloads: dict[int, _Workload] = {}
        self._lock = threading.Lock()

    def submit(self, run: Run) -> None:
        with self._lock:
            if run.id not in self._workloads and self._adopt(run.id) is None:
                self._workloads[run.id] = _Workload(run.id)

    def admit(self, run_id: int) -> None:
        with self._lock:
            workload = self._workloads.setdefault(run_id, _Workload(run_id))
            if not workload.started and not workload.stopping:
                self._start(workload)

    def stop(self, run_id: int) -> None:
        with self._lock:
            workload = self._workloads.get(run_id) or self._adopt(run_id)
            if workload is None or workload.stopping:
                return
            workload.stopping = True
            proc = workload.process
            if proc is None or proc.poll() is not None:
                self._workloads.pop(run_id, None)
                self.changes.add(run_id)
                return
            log.info("run %d: SIGTERM to runner pid %d", run_id, proc.pid)
            proc.send_signal(signal.SIGTERM)
            workload.kill_timer = threading.Timer(self._grace, self._kill, (proc, run_id))
            workload.kill_timer.daemon = True
            workload.kill_timer.start()

    def observe(self, run_ids: Iterable[int]) -> dict[int, WorkloadState]:
        """What each run's workload is now. A read: restarts happen when a process
        exits (in its waiter thread), never here."""
        with self._lock:
            return {run_id: self._state(run_id) for run_id in run_ids}

    def workload_run_ids(self) -> set[int]:
        with self._lock:
            return set(self._workloads)

    def forget(self, run_id: int) -> None:
        with self._lock:
            workload = self._workloads.get(run_id)
            if workload and (workload.process is None or workload.process.poll() is not None):
                self._workloads.pop(run_id, None)

    def close(self) -> None:
        """Stop every runner: in the embedded default they live and die with the server."""
        with self._lock:
            for workload in self._workloads.values():
                workload.stopping = True  # the server is going: none is restarted
            procs = [w.process for w in self._workloads.values()
                     if w.process is not None and w.process.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if isinstance(proc, AdoptedRunner):
                continue
            try:
                proc.wait(self._grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- internals ---------------------------------------------------------------------
    def _pid_file(self, run_id: int) -> Path:
        return self._log_dir / f"run-{run_id}.pid"

    def _start(self, workload: _Workload) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"run-{workload.run_id}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runner", "--run-id", str(workload.run_id)],
                env=self._env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is the server's, not theirs
            )
        workload.process, workload.started, workload.exit_code = proc, True, None
        self._pid_file(workload.run_id).write_text(
            f"{proc.pid} {process_start_time(proc.pid)}\n")
        threading.Thread(target=self._wait, args=(workload, proc), daemon=True,
                         name=f"runner-{workload.run_id}").start()
        log.info("run %d: runner pid %d (log %s)", workload.run_id, proc.pid, log_path)

    def _wait(self, workload: _Workload, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if workload.kill_timer is not None:
                workload.kill_timer.cancel()
            if self._should_restart(workload, code):
                workload.restarts += 1
                log.warning("run %d: runner exited with %d; restart %d of %d",
                            workload.run_id, code, workload.restarts, self._backoff_limit)
                self._start(workload)
            else:
                workload.exit_code = code
                self._pid_file(workload.run_id).unlink(missing_ok=True)
        self.changes.add(workload.run_id)

    def _should_restart(self, workload: _Workload, code: int) -> bool:
        return (exit_verdict(code) == "retry" and not workload.stopping
                and self._workloads.get(workload.run_id) is workload
                and workload.restarts < self._backoff_limit)

    def _kill(self, proc: Process, run_id: int) -> None:
        if proc.poll() is None:
            log.warning("run %d: runner ignored SIGTERM for %.0fs; SIGKILL", run_id, self._grace)
            proc.kill()

    def _adopt(self, run_id: int) -> _Workload | None:
        """A live runner an earlier server started for this run, taken over."""
        try:
            pid_text, started = self._pid_file(run_id).read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        if process_start_time(pid) != started or not _is_runner_of(pid, run_id):
            self._pid_file(run_id).unlink(missing_ok=True)
            return None
        log.warning("run %d: adopting runner pid %d left by an earlier server", run_id, pid)
        workload = _Workload(run_id, started=True, process=AdoptedRunner(pid, started))
        self._workloads[run_id] = workload
        return workload

    def _state(self, run_id: int) -> WorkloadState:
        workload = self._workloads.get(run_id) or self._adopt(run_id)
        if workload is None:
            return WorkloadState("gone", "runner process not found")
        if not workload.started:
            return WorkloadState("suspended")
        proc = workload.process
        assert proc is not None
        if workload.exit_code is None and proc.poll() is None:
            return WorkloadState("running", pod_alive=True)
        if isinstance(proc, AdoptedRunner):  # its exit code went to another parent
            self._workloads.pop(run_id, None)
            return WorkloadState("gone", "adopted runner exited")
        if workload.exit_code is None:  # exited; its waiter is about to decide
            return WorkloadState("running", pod_alive=True)
        return self._ended(workload, workload.exit_code)

    def _ended(self, workload: _Workload, code: int) -> WorkloadState:
        verdict = exit_verdict(code)
        if verdict == "ended":
            return WorkloadState("succeeded", exit_code=0)
        if verdict == "superseded":
            return WorkloadState("gone", "runner superseded by a newer attempt")
        return WorkloadState("failed", _exit_reason(code, workload.restarts), code)


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19]


def _is_runner_of(pid: int, run_id: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"runner" in argv and str(run_id).encode() in argv


def _exit_reason(code: int, restarts: int) -> str:
    if code < 0:
        return f"runner killed by {signal.Signals(-code).name} after {restarts} restarts"
    if code == EXIT_NO_RETRY:
        return "runner refused the run (configuration error, exit 78)"
    return f"BackoffLimitExceeded: runner exited with code {code} after {restarts} restarts"
