"""`python -m runner --run-id N`: the container entrypoint."""

from __future__ import annotations

import argparse
import logging
import sys

from prometheus_client import start_http_server

from core import __version__
from core.eventlog import open_event_log
from core.logs import configure_logging
from core.settings import CoreSettings
from core.store import open_store
from runner.app import RunnerDeps, play_run
from runner.llm_settings import LlmSettings
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal, install_handlers

log = logging.getLogger("runner")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runner",
                                     description="Play one tickrun run to its end.")
    parser.add_argument("--run-id", type=int, help="the run to play (the only input)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on this port")
    parser.add_argument("--version", action="version", version=f"tickrun-runner {__version__}")
    args = parser.parse_args(argv)
    if args.run_id is None:
        parser.error("--run-id is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("runner")
    settings = RunnerSettings()
    stop = StopSignal()
    install_handlers(stop, budget_seconds=settings.stop_budget_seconds)
    port = args.metrics_port or settings.metrics_port
    if port:
        start_http_server(port)
    core_settings = CoreSettings()
    store = open_store(core_settings.database_url.get_secret_value(), pool_size=2)
    event_log = open_event_log(core_settings)
    try:
        return play_run(args.run_id, RunnerDeps(store=store, event_log=event_log,
                                                settings=settings, stop=stop,
                                                llm=LlmSettings()))
    finally:
        event_log.close()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
