"""`python -m api --workers N`: N uvicorn workers, each on a listening socket of its own.

uvicorn's own workers share one listening socket, and a worker's event loop accepts
every connection waiting when it wakes: a burst of keep-alive connections (a load
balancer's pool, wrk's 50) can all land on one worker while the others idle. `bench
api` saw it in a quarter of its runs (one worker at 0.01 s of CPU, the other at 10 s).
Here each worker binds the port with SO_REUSEPORT, and the kernel spreads new
connections over the workers' sockets by their addresses.

The supervisor does what uvicorn's does: it starts the workers, starts another when
one dies after serving, stops everything when one cannot start (its port, its app),
and passes SIGTERM and SIGINT on (each worker ends its requests within uvicorn's
graceful timeout).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

from core.logs import configure_logging
from core.signals import on_signals

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STARTUP_FAILURE = 3  # uvicorn's exit code for a server that never served
GRACE_SECONDS = 15  # past uvicorn's graceful shutdown timeout (10 s): then SIGKILL


def listening_socket(host: str, port: int) -> socket.socket:
    """The port, bound for this worker alone among the others that bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY on accepted sockets only then
    # (without it a lone client waits on Nagle against delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def die_with(parent: int) -> None:
    """SIGTERM this process when `parent` dies (a supervisor SIGKILLed or OOM-killed
    outside a container): no orphan keeps serving on the port. Linux only."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("no parent-death signal: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before the line above
        sys.exit(0)


def run_worker(options: dict[str, Any], log_level: str, parent: int) -> None:
    """One worker process: its own socket, then uvicorn serving the app on it."""
    die_with(parent)
    configure_logging("api", level=log_level)
    config = uvicorn.Config(**options)
    try:
        sock = listening_socket(config.host, config.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:  # the app's start-up failed: the next worker's would too
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    def __init__(self, options: dict[str, Any], workers: int, log_level: str) -> None:
        self.options, self.count, self.log_level = options, workers, log_level
        self.context = multiprocessing.get_context("spawn")  # no state forked over
        self.stopping = threading.Event()
        self.failed = False
        self.workers: list[BaseProcess] = []

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (exit 0) or a worker that cannot start (1)."""
        on_signals(lambda sig: self.stopping.set())
        self.workers = [self._start() for _ in range(self.count)]
        while not self.stopping.wait(0.5):
            self._replace_the_dead()
        self._stop_all()
        return 1 if self.failed else 0

    def _start(self) -> BaseProcess:
        worker = self.context.Process(target=run_worker, name="api-worker",
                                      args=(self.options, self.log_level, os.getpid()))
        worker.start()
        return worker

    def _replace_the_dead(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.is_alive():
                continue
            if worker.exitcode == STARTUP_FAILURE:
                log.error("API worker %s could not start; stopping", worker.pid)
                self.failed = True
                self.stopping.set()
                return
            log.warning("API worker %s exited (%s); starting another", worker.pid,
                        worker.exitcode)
            self.workers[i] = self._start()

    def _stop_all(self) -> None:
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for worker in self.workers:
            worker.join(GRACE_SECONDS)
            if worker.is_alive():
                log.warning("API worker %s did not stop in %d s; killing it", worker.pid,
                            GRACE_SECONDS)
                worker.kill()
                worker.join()


def serve(options: dict[str, Any], *, workers: int, log_level: str) -> int:
    """Run `workers` uvicorn servers of `options` (uvicorn.Config's keywords, the app
    as an import string) on one port; the exit code."""
    return Supervisor(options, workers, log_level).run()
