"""The local executor: one `python -m runner` subprocess per run.

It does for the embedded default what a Job does in the cluster: a workload is created
suspended and started on admission; a retryable exit (1) is restarted up to a backoff
limit and the new process resumes from the checkpoint; stop sends SIGTERM, then SIGKILL
after the grace period, as the kubelet does.
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
from core.exitcodes import EXIT_NO_RETRY, EXIT_RETRY
from core.records import Run

log = logging.getLogger(__name__)



@dataclass
class _Workload:
    run_id: int
    started: bool = False
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    stopping: bool = False
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
            self._workloads.setdefault(run.id, _Workload(run.id))

    def admit(self, run_id: int) -> None:
        with self._lock:
            workload = self._workloads.setdefault(run_id, _Workload(run_id))
            if not workload.started and not workload.stopping:
                self._start(workload)

    def stop(self, run_id: int) -> None:
        with self._lock:
            workload = self._workloads.get(run_id)
            if workload is None or workload.stopping:
                return
            workload.stopping = True
            proc = workload.process
            if proc is None or proc.poll() is not None:
                self._workloads.pop(run_id, None)
                self.changed.set()
                return
            log.info("run %d: SIGTERM to runner pid %d", run_id, proc.pid)
            proc.send_signal(signal.SIGTERM)
            workload.kill_timer = threading.Timer(self._grace, self._kill, (proc, run_id))
            workload.kill_timer.daemon = True
            workload.kill_timer.start()

    def observe(self, run_ids: Iterable[int]) -> dict[int, WorkloadState]:
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
            procs = [w.process for w in self._workloads.values()
                     if w.process is not None and w.process.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(self._grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- internals ---------------------------------------------------------------------
    def _start(self, workload: _Workload) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"run-{workload.run_id}.log"
        with open(log_path, "ab") as out:
            workload.process = subprocess.Popen(
                [sys.executable, "-m", "runner", "--run-id", str(workload.run_id)],
                env=self._env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is the server's, not theirs
            )
        workload.started = True
        threading.Thread(target=self._wait, args=(workload.process,), daemon=True,
                         name=f"runner-{workload.run_id}").start()
        log.info("run %d: runner pid %d (log %s)", workload.run_id, workload.process.pid,
                 log_path)

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self.changed.set()

    def _kill(self, proc: subprocess.Popen[bytes], run_id: int) -> None:
        if proc.poll() is None:
            log.warning("run %d: runner ignored SIGTERM for %.0fs; SIGKILL", run_id, self._grace)
            proc.kill()

    def _state(self, run_id: int) -> WorkloadState:
        workload = self._workloads.get(run_id)
        if workload is None:
            return WorkloadState("gone", "runner process not found")
        if not workload.started:
            return WorkloadState("suspended")
        proc = workload.process
        assert proc is not None
        code = proc.poll()
        if code is None:
            return WorkloadState("running", pod_alive=True)
        if workload.kill_timer is not None:
            workload.kill_timer.cancel()
        if code == 0:
            return WorkloadState("succeeded", exit_code=0)
        if code == EXIT_RETRY and not workload.stopping and \
                workload.restarts < self._backoff_limit:
            workload.restarts += 1
            log.warning("run %d: runner exited with 1; restart %d of %d", run_id,
                        workload.restarts, self._backoff_limit)
            self._start(workload)
            return WorkloadState("running", pod_alive=True)
        return WorkloadState("failed", _exit_reason(code, workload.restarts), code)


def _exit_reason(code: int, restarts: int) -> str:
    if code < 0:
        return f"runner killed by {signal.Signals(-code).name}"
    if code == EXIT_NO_RETRY:
        return "runner refused the run (configuration error, exit 78)"
    if code == EXIT_RETRY:
        return f"BackoffLimitExceeded: runner exited with code 1 after {restarts} restarts"
    return f"runner exited with code {code}"

