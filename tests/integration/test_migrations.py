"""Migrations: one command, idempotent, Supabase RLS only where `auth` exists."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.servers import Postgres


@pytest.fixture
def empty_database(postgres_server: Postgres) -> Iterator[str]:
    name = f"m_{uuid.uuid4().hex[:10]}"
    admin = postgres_server.url(database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url(database=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def migrate(url: str) -> str:
    env = {**os.environ, "TICKRUN_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "core.migrate"], env=env, check=True,
                          capture_output=True, text=True)
    assert "postgresql://" not in done.stdout + done.stderr  # no credentials printed
    return done.stdout


def policies(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_policies")}


def test_plain_postgres_gets_tables_and_no_policies(empty_database: str) -> None:
    assert "applied 2 migration(s)" in migrate(empty_database)
    assert "applied 0 migration(s)" in migrate(empty_database)
    assert policies(empty_database) == set()


def test_supabase_gets_row_level_security(empty_database: str) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA auth")
        conn.execute("CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS "
                     "$$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')"
                     "::uuid $$")
    migrate(empty_database)
    assert policies(empty_database) == {"models", "runs", "portfolios", "trades", "positions",
                                        "decisions"}


def test_sqlite_migrates_by_the_same_command(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    assert "applied 1 migration(s)" in migrate(url)
    assert "applied 0 migration(s)" in migrate(url)
