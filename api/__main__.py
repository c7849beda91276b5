"""`python -m api`: the API server (the chart's command), settings from TICKRUN_*."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn

from api.main import create_app
from api.settings import ApiProcessSettings
from api.workers import serve
from core.environment import settings_or_exit
from core.logs import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Checked here, before uvicorn starts its workers: a bad setting is one line.
    settings = settings_or_exit("api", ApiProcessSettings.from_env)
    configure_logging("api", level=settings.core.log_level)
    options: dict[str, Any] = {
        "host": args.host, "port": args.port, "log_config": None, "access_log": False,
        "proxy_headers": True, "forwarded_allow_ips": "*", "timeout_graceful_shutdown": 10,
        "loop": "uvloop", "http": "httptools"}
    if args.workers == 1:  # one process: this app, from the settings just read
        uvicorn.run(create_app(settings=settings), **options)
        return
    # Several: each worker builds its app from the environment, once, and listens on a
    # socket of its own (api.workers says why).
    sys.exit(serve({**options, "app": "api.main:create_app", "factory": True},
                   workers=args.workers, log_level=settings.core.log_level))


if __name__ == "__main__":
    main()
