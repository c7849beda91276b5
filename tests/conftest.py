"""Shared fixtures: real PostgreSQL and Redis, and a store on each backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.eventlog import EventLog
from core.eventlog.redis_log import RedisEventLog
from core.eventlog.sqlite_log import SqliteEventLog
from core.store import Store, open_store
from core.store.sqlite import SqliteStore
from tests.apiserver import Backend
from tests.servers import Postgres, Redis, start_postgres, start_redis


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: Postgres) -> Iterator[str]:
    """A fresh, migrated database per test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.url(database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url(database=name)
    store = open_store(url, pool_size=1)
    store.migrate()
    store.close()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tickrun.db'}"
    store = open_store(url)
    store.migrate()
    store.close()
    return url


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on PostgreSQL and once on SQLite."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url, pool_size=20)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A migrated SQLite store on a file of the test's own: no server needed."""
    s = SqliteStore(tmp_path / "t.db")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def redis_url(redis_server: Redis) -> str:
    return redis_server.url()


@pytest.fixture
def redis_prefix() -> str:
    """Every test's Redis keys apart: run ids restart with each fresh database."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def event_log(database_url: str, redis_server: Redis, redis_prefix: str) -> Iterator[EventLog]:
    """Redis Streams with PostgreSQL, the SQLite log with SQLite (as deployed)."""
    log: EventLog
    if database_url.startswith("sqlite"):
        log = SqliteEventLog(SqliteStore(database_url.removeprefix("sqlite:///")))
    else:
        log = RedisEventLog(redis_server.url(), prefix=redis_prefix)
    yield log
    log.close()


@pytest.fixture
def runner_env(database_url: str, redis_server: Redis, redis_prefix: str) -> dict[str, str]:
    """Environment for a `python -m runner` subprocess on the same backends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")}
    env["TICKRUN_DATABASE_URL"] = database_url
    if not database_url.startswith("sqlite"):
        env["TICKRUN_REDIS_URL"] = redis_server.url()
        env["TICKRUN_REDIS_KEY_PREFIX"] = redis_prefix
    return env


@pytest.fixture
def backend(database_url: str, redis_server: Redis, redis_prefix: str,
            tmp_path: Path) -> Backend:
    """PostgreSQL + Redis, or SQLite alone: the two ways tickrun is deployed."""
    redis = None if database_url.startswith("sqlite") else redis_server.url()
    return Backend(database_url, redis, redis_prefix, tmp_path / "runner-logs")
