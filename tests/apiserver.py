"""A real tickrun API on a free port (uvicorn on a thread), with runners as subprocesses.

Tests talk to it over HTTP only. Tokens are real HS256 JWTs signed with the test secret.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from pydantic import SecretStr

from api.auth import Authenticator
from api.main import create_app
from api.services import Services, run_ended
from api.settings import ApiSettings
from api.sse import EventHub
from controller.executor import Executor
from controller.local import LocalExecutor
from controller.reconciler import Limits, Reconciler
from core.eventlog import EventLog
from core.eventlog.redis_log import RedisEventLog
from core.eventlog.sqlite_log import SqliteEventLog
from core.marketdata.settings import MarketDataSettings
from core.spend import SpendSettings
from core.store import open_store
from core.store.sqlite import SqliteStore
from tests.servers import free_port

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"
AUDIENCE = "authenticated"


def token(user_id: str, *, secret: str = JWT_SECRET, audience: str = AUDIENCE,
          expires_in: int = 3600, **claims: Any) -> str:
    payload = {"sub": user_id, "aud": audience, "exp": int(time.time()) + expires_in,
               "iat": int(time.time()), "role": "authenticated", **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


class Backend:
    """Where runs are kept: database URL plus Redis (with PostgreSQL) or SQLite events."""

    def __init__(self, database_url: str, redis_url: str | None, redis_prefix: str,
                 log_dir: Path) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.log_dir = log_dir

    def event_log(self) -> EventLog:
        if self.redis_url is None:
            return SqliteEventLog(SqliteStore(self.database_url.removeprefix("sqlite:///")))
        return RedisEventLog(self.redis_url, prefix=self.redis_prefix)

    def runner_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")}
        env["TICKRUN_DATABASE_URL"] = self.database_url
        if self.redis_url is not None:
            env["TICKRUN_REDIS_URL"] = self.redis_url
            env["TICKRUN_REDIS_KEY_PREFIX"] = self.redis_prefix
        env.update(extra)
        return env


class ApiServer:
    def __init__(self, backend: Backend, *, per_user: int = 2, global_: int = 20,
                 runner_env: dict[str, str] | None = None, grace: float = 10.0,
                 port: int | None = None, reconcile: bool = True,
                 executor: Executor | None = None,
                 market_data: MarketDataSettings | None = None,
                 daily_spend_usd: Decimal | None = None,
                 clock: Callable[[], dt.datetime] | None = None, **api: Any) -> None:
        self.backend = backend
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        store = open_store(backend.database_url, pool_size=10)
        events = backend.event_log()
        executor = executor or LocalExecutor(backend.runner_env(**(runner_env or {})),
                                             log_dir=backend.log_dir, grace_seconds=grace)
        settings = ApiSettings(jwt_secret=SecretStr(JWT_SECRET), **api)
        self.services = Services(
            settings=settings, store=store, events=events, executor=executor,
            auth=Authenticator(settings),
            hub=EventHub(events, run_ended(store), end_check_seconds=0.5),
            spend=SpendSettings(user_daily_cost_usd=daily_spend_usd),
            reconciler=Reconciler(store, events, executor,
                                  Limits(per_user, global_, daily_spend_usd),
                                  lost_grace_seconds=1.0,
                                  clock=clock or (lambda: dt.datetime.now(dt.UTC)))
            if reconcile else None)
        if market_data is not None:
            self.services.market_data = market_data
        config = uvicorn.Config(create_app(self.services), host="127.0.0.1", port=self.port,
                                log_level="warning", log_config=None,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "API did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(20)

    def client(self, user_id: str = "user-a", **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {token(user_id)}"}, **kw)


@contextmanager
def running_api(backend: Backend, **kw: Any) -> Iterator[ApiServer]:
    server = ApiServer(backend, **kw).start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def wait_status(client: httpx.Client, run_id: int, statuses: set[str],
                timeout: float = 90.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").raise_for_status().json()
        return run if run["status"] in statuses else None
    return dict(wait_for(reached, timeout))
