"""`python -m runner --run-id N`: the container entrypoint."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from prometheus_client import start_http_server

from core import __version__
from core.environment import check_environment, read_settings, settings_or_exit
from core.eventlog import open_event_log
from core.logs import configure_logging
from core.settings import CoreSettings
from core.store import open_store
from runner.app import RunnerDeps, play_run
from runner.llm_ratelimit import RateLimiter, open_rate_limiter
from runner.llm_settings import LlmSettings, load_llm_settings
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
    settings, core_settings = settings_or_exit("runner", _read_settings)
    configure_logging("runner", level=core_settings.log_level)
    stop = StopSignal()
    install_handlers(stop, budget_seconds=settings.stop_budget_seconds)
    port = args.metrics_port or settings.metrics_port
    if port:
        start_http_server(port)
    llm, llm_error = load_llm_settings()
    if llm_error is not None:
        log.error("invalid TICKRUN_LLM_* settings: %s; runs that need the LLM fail", llm_error)
    store = open_store(core_settings.database_url.get_secret_value(), pool_size=2)
    event_log = open_event_log(core_settings)
    limiter = _llm_limiter(llm, core_settings)
    try:
        return play_run(args.run_id, RunnerDeps(store=store, event_log=event_log,
                                                settings=settings, stop=stop,
                                                llm=llm, llm_error=llm_error,
                                                llm_limiter=limiter))
    finally:
        if limiter is not None:
            limiter.close()
        event_log.close()
        store.close()


def _read_settings() -> tuple[RunnerSettings, CoreSettings]:
    check_environment()
    return read_settings(RunnerSettings), read_settings(CoreSettings)


def _llm_limiter(llm: LlmSettings | None, core: CoreSettings) -> RateLimiter | None:
    """The provider key's rate limit, shared through Redis with every runner pod on the
    key; without Redis (the embedded default), through a file beside the SQLite
    database with the other runner processes of `tickrun dev`."""
    if llm is None or not llm.available:
        return None
    redis_url = core.redis_url.get_secret_value() if core.redis_url else None
    database = core.database_url.get_secret_value()
    state_dir = (Path(database.removeprefix("sqlite:///")).parent
                 if database.startswith("sqlite:///") else None)
    return open_rate_limiter(llm, redis_url=redis_url, prefix=core.redis_key_prefix,
                             timeout_seconds=core.redis_timeout_seconds, state_dir=state_dir)


if __name__ == "__main__":
    sys.exit(main())
