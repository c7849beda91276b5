"""`tickrun dev`: the API, the reconciler and the local executor in one process on SQLite."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from pathlib import Path

import uvicorn

from api.main import create_app
from api.settings import ApiProcessSettings
from core.environment import settings_or_exit
from core.logs import configure_logging


def dev_environment(data_dir: Path) -> tuple[str, ApiProcessSettings]:
    """Point every TICKRUN_* setting this process and its runners read at the embedded
    default (unless already set); returns the dev token, kept in data_dir (mode 0600),
    and the settings, read once here for the whole process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    token_file = data_dir / "dev-token"
    if not token_file.exists():
        token_file.touch(mode=0o600)
        token_file.write_text(secrets.token_urlsafe(32))
    token = token_file.read_text().strip()
    defaults = {
        "TICKRUN_DATABASE_URL": f"sqlite:///{(data_dir / 'tickrun.db').resolve()}",
        "TICKRUN_EXECUTOR": "local",
        "TICKRUN_AUTH_MODE": "dev",
        "TICKRUN_MIGRATE_ON_START": "true",
        "TICKRUN_LOCAL_LOG_DIR": str((data_dir / "logs").resolve()),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ["TICKRUN_DEV_TOKEN"] = token
    # A misspelt or invalid TICKRUN_* variable: one line and exit 78, before anything starts.
    return token, settings_or_exit("dev", ApiProcessSettings.from_env)


def server(settings: ApiProcessSettings, host: str, port: int, *,
           log_level: str = "info") -> uvicorn.Server:
    config = uvicorn.Config(create_app(settings=settings), host=host, port=port,
                            log_level=log_level, log_config=None, access_log=False,
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def run_dev(host: str, port: int, data_dir: Path) -> None:
    _, settings = dev_environment(data_dir)
    configure_logging("api", json=False, level=settings.core.log_level)
    server(settings, host, port).run()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """The dev server on a thread, for `tickrun demo`."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.token, settings = dev_environment(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = server(settings, "127.0.0.1", self.port, log_level="warning")
        self._thread = threading.Thread(target=self._server.run, name="dev-server", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the dev server did not start; see the log above")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
