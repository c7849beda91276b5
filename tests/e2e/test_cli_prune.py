"""`tickrun runs prune` as an operator (or the chart's CronJob) runs it: in-process
against TICKRUN_DATABASE_URL, an old final run archived and gone, a running one kept;
a summary line or one JSON object; one-line errors, no traceback."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.eventlog import EventType
from core.eventlog.redis_log import RedisEventLog
from core.status import RunStatus
from core.store import Store, open_store
from tests.e2e.test_cli_data import clean_env, one_line_error, tickrun
from tests.integration.test_retention import LONG_AGO, played, rows_of
from tests.servers import Redis

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def db(database_url: str) -> Iterator[Store]:
    store = open_store(database_url, pool_size=2)
    yield store
    store.close()


@pytest.fixture
def env(database_url: str, redis_server: Redis, redis_prefix: str) -> dict[str, str]:
    extra = {"TICKRUN_DATABASE_URL": database_url}
    if not database_url.startswith("sqlite"):
        extra |= {"TICKRUN_REDIS_URL": redis_server.url(),
                  "TICKRUN_REDIS_KEY_PREFIX": redis_prefix}
    return clean_env(**extra)


def test_prune_archives_an_old_run_and_keeps_a_running_one(
        db: Store, env: dict[str, str], tmp_path: Path, database_url: str,
        redis_server: Redis, redis_prefix: str) -> None:
    old = played(db)
    running = played(db, final=None)
    recent = played(db, finished_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    if not database_url.startswith("sqlite"):
        events = RedisEventLog(redis_server.url(), prefix=redis_prefix)
        events.append(old.id, EventType.STATUS, {"status": "completed"})
    archive = tmp_path / "archive"

    dry = tickrun("runs", "prune", "--older-than", "90d", "--archive-dir", str(archive),
                  "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would prune 1 run(s)" in dry.stdout and f": {old.id}" in dry.stdout
    assert rows_of(db, old.id)["runs"] == 1 and not archive.exists()

    done = tickrun("runs", "prune", "--older-than", "90d", "--archive-dir", str(archive),
                   "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["runs"] == [old.id] and report["deleted"] == 1 and report["archived"] == 1
    # The run, its portfolio, 3 decisions, 4 orders with 2 events each, 4 trades and
    # 3 positions (tests/integration/test_retention.py counts them one by one).
    assert report["rows"] == 1 + 1 + 3 + 4 + 8 + 4 + 3
    assert report["skipped"] == [] and report["dry_run"] is False
    assert report["streams_deleted"] == 1
    if not database_url.startswith("sqlite"):
        assert events.read(old.id) == []
        events.close()
    path = archive / LONG_AGO.strftime("%Y-%m") / f"run-{old.id}.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["kind"] == "run" and lines[0]["id"] == old.id
    assert sum(x["kind"] == "trade" for x in lines) == 4
    assert rows_of(db, old.id)["runs"] == 0
    assert db.get_run(running.id).status is RunStatus.RUNNING
    assert rows_of(db, running.id)["trades"] == 4
    assert rows_of(db, recent.id)["runs"] == 1

    # An ISO date, no archive: the recent run goes, the running one still stays.
    today = dt.datetime.now(dt.UTC).date().isoformat()
    done = tickrun("runs", "prune", "--older-than", today, "--no-archive", cwd=tmp_path,
                   env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pruned 1 run(s) finished before")
    assert "not archived (--no-archive)" in done.stdout and "0 skipped" in done.stdout
    assert rows_of(db, recent.id)["runs"] == 0
    assert db.get_run(running.id).status is RunStatus.RUNNING


@pytest.mark.parametrize(("args", "says"), [
    (["--older-than", "90d"], "--archive-dir DIR"),
    (["--older-than", "90d", "--no-archive", "--archive-dir", "x"], "--archive-dir DIR"),
    (["--older-than", "ninety days", "--no-archive"], "neither an age"),
    (["--older-than", "0d", "--no-archive"], "more than 0"),
    (["--older-than", "2999-01-01", "--no-archive"], "in the future"),
])
def test_prune_refuses_bad_input_with_one_line_and_exit_2(
        sqlite_url: str, tmp_path: Path, args: list[str], says: str) -> None:
    env = clean_env(TICKRUN_DATABASE_URL=sqlite_url)
    one_line_error(tickrun("runs", "prune", *args, cwd=tmp_path, env=env), 2, says)


def test_an_archive_that_cannot_be_written_deletes_nothing(
        sqlite_url: str, tmp_path: Path) -> None:
    store = open_store(sqlite_url)
    old = played(store)
    (tmp_path / "full").write_text("")
    archive = tmp_path / "full" / "archive"  # under a file: cannot be made
    env = clean_env(TICKRUN_DATABASE_URL=sqlite_url)
    one_line_error(tickrun("runs", "prune", "--older-than", "90d", "--archive-dir",
                           str(archive), cwd=tmp_path, env=env), 1, "was not deleted")
    assert rows_of(store, old.id)["runs"] == 1
    store.close()
