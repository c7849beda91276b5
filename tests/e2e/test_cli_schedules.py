"""`tickrun schedules` as a user runs it against a real API: a schedule made, listed,
shown with its next fires in New York time, paused, resumed and deleted; the API's
refusals as one error line. No controller runs: the fires shown are recorded here (the
scheduler is tested on its own)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.calendar import previous_sessions, today_in_new_york
from core.records import FireOutcome
from core.schedule import NEW_YORK, spec_for
from core.store import BatchRun, open_store
from tests.apiserver import Backend, running_api, token
from tests.e2e.test_cli import TICKRUN, clean_env

pytestmark = pytest.mark.timeout(300)
CRON = "30 16 * * 1-5"


def tickrun(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TICKRUN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def ok_json(env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = tickrun(env, cwd, *args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def new_york(stamp: str) -> str:
    """An API time as the CLI shows it."""
    return dt.datetime.fromisoformat(stamp).astimezone(NEW_YORK).strftime(
        "%a %Y-%m-%d %H:%M %Z")


@pytest.fixture
def backend(sqlite_url: str, tmp_path: Path) -> Backend:
    """SQLite alone: the CLI is under test here, the stores are tested on both backends."""
    return Backend(sqlite_url, None, "", tmp_path / "runner-logs")


@pytest.fixture
def api_env(backend: Backend) -> Iterator[dict[str, str]]:
    """A user's environment pointed at a running API (no controller: nothing fires)."""
    with running_api(backend, reconcile=False) as api:
        yield clean_env(TICKRUN_API_URL=api.url, TICKRUN_TOKEN=token("user-a"),
                        COLUMNS="250")


def record_fires(database_url: str, schedule: dict[str, Any]) -> tuple[int, str]:
    """What the scheduler would record: the last session's fire with its run, and the
    session before's as failed. Returns the run id and the failure's reason."""
    sessions = previous_sessions(today_in_new_york(), 2)
    due = [dt.datetime.combine(day, dt.time(16, 30), NEW_YORK).astimezone(dt.UTC)
           for day in sessions]
    reason = "no run: model 1 not found"
    store = open_store(database_url)
    try:
        spec = spec_for(schedule["template"], due[1])
        fired = store.fire_schedule(schedule["id"], due[1], FireOutcome.FIRED,
                                    run=BatchRun(schedule["model_id"], spec, spec.step_count()))
        store.fire_schedule(schedule["id"], due[0], FireOutcome.FAILED, reason=reason)
    finally:
        store.close()
    assert fired is not None and fired[1] is not None
    return fired[1].id, reason


def test_a_schedule_made_listed_paused_resumed_and_deleted(
        api_env: dict[str, str], backend: Backend, tmp_path: Path) -> None:
    model = ok_json(api_env, tmp_path, "models", "create", "after-close")
    made = tickrun(api_env, tmp_path, "schedules", "create", "--model", str(model["id"]),
                   "--cron", CRON, "--mode", "daily", "--symbol", "aapl", "--data",
                   "synthetic", "--decider", "sma_crossover", "--param", "fast=5",
                   "--param", "slow=20", "--name", "after the close")
    assert made.returncode == 0, made.stderr
    listed = ok_json(api_env, tmp_path, "schedules", "ls")["items"]
    assert len(listed) == 1
    sid = str(listed[0]["id"])
    schedule = ok_json(api_env, tmp_path, "schedules", "get", sid)
    assert schedule == listed[0]
    assert f"schedule {sid} created" in made.stderr
    assert f"schedule {sid} (after the close): {CRON} in America/New_York" in made.stdout
    assert "daily AAPL, 5 sessions to the last closed session; decider sma_crossover; " \
           'data synthetic; params {"fast": 5, "slow": 20}' in made.stdout, made.stdout
    # The next three fires, each at 16:30 New York time (EST or EDT as the date has it).
    assert len(schedule["next_fires"]) == 3
    shown = ", ".join(new_york(f) for f in schedule["next_fires"])
    assert f"next fires: {shown}" in made.stdout and shown.count("16:30 E") == 3
    assert schedule["template"]["decider_params"] == {"fast": 5, "slow": 20}

    table = tickrun(api_env, tmp_path, "schedules", "ls")
    assert table.returncode == 0, table.stderr
    row = table.stdout.strip().splitlines()[1]
    assert row.split()[0] == sid and "after the close" in row and CRON in row
    assert "daily" in row and "AAPL" in row and " no " in row
    assert new_york(schedule["next_fires"][0]) in row, table.stdout

    got = tickrun(api_env, tmp_path, "schedules", "get", sid)
    assert got.returncode == 0 and "recent fires: none yet" in got.stdout, got.stdout
    assert f"next fires: {shown}" in got.stdout
    nothing = tickrun(api_env, tmp_path, "schedules", "fires", sid)
    assert f"schedule {sid} has not fired yet" in nothing.stdout

    run_id, reason = record_fires(backend.database_url, schedule)
    got = tickrun(api_env, tmp_path, "schedules", "get", sid)
    assert "recent fires" in got.stdout and reason in got.stdout, got.stdout
    assert any(line.split()[4:6] == ["fired", str(run_id)]
               for line in got.stdout.splitlines()), got.stdout
    fires = ok_json(api_env, tmp_path, "schedules", "fires", sid, "--limit", "1")
    assert [(f["outcome"], f["run_id"]) for f in fires] == [("fired", run_id)]
    runs = ok_json(api_env, tmp_path, "schedules", "runs", sid)["items"]
    assert [(r["id"], r["schedule_id"], r["status"]) for r in runs] == \
        [(run_id, schedule["id"], "queued")]
    runs_table = tickrun(api_env, tmp_path, "schedules", "runs", sid)
    assert runs_table.returncode == 0, runs_table.stderr
    assert runs_table.stdout.strip().splitlines()[1].split()[:1] == [str(run_id)]
    assert new_york(fires[0]["due_at"]) in runs_table.stdout, runs_table.stdout

    paused = tickrun(api_env, tmp_path, "schedules", "pause", sid)
    assert paused.returncode == 0 and f"schedule {sid} paused" in paused.stdout
    after = ok_json(api_env, tmp_path, "schedules", "get", sid)
    assert after["paused"] is True and after["next_fires"] == []
    assert "next fires: none (paused)" in tickrun(api_env, tmp_path, "schedules", "get",
                                                  sid).stdout
    resumed = ok_json(api_env, tmp_path, "schedules", "resume", sid)
    assert resumed["paused"] is False and len(resumed["next_fires"]) == 3
    again = tickrun(api_env, tmp_path, "schedules", "pause", sid, "--json")
    assert json.loads(again.stdout)["paused"] is True
    said = tickrun(api_env, tmp_path, "schedules", "resume", sid)
    assert f"resumed; next fire {new_york(resumed['next_fires'][0])}" in said.stdout

    removed = tickrun(api_env, tmp_path, "schedules", "rm", sid)
    assert removed.returncode == 0 and f"schedule {sid} deleted" in removed.stdout
    for command in ("get", "runs", "rm"):
        gone = tickrun(api_env, tmp_path, "schedules", command, sid)
        assert gone.returncode == 1, (command, gone.stdout, gone.stderr)
        assert f"error 404 schedule {sid} not found" in gone.stderr, gone.stderr
        assert "Traceback" not in gone.stderr
    # Its run stays, no longer of a schedule.
    kept = ok_json(api_env, tmp_path, "runs", "get", str(run_id))
    assert kept["schedule_id"] is None


def test_refusals_exit_non_zero_with_the_reason(api_env: dict[str, str],
                                                tmp_path: Path) -> None:
    model = ok_json(api_env, tmp_path, "models", "create", "refused")

    def create(cron: str, *more: str) -> subprocess.CompletedProcess[str]:
        return tickrun(api_env, tmp_path, "schedules", "create", "--model", str(model["id"]),
                       "--cron", cron, "--mode", "daily", "--symbol", "MSFT", "--data",
                       "synthetic", *more)
    for cron, says in (("30 16 * *", "is not five fields (minute hour day month weekday"),
                       ("61 16 * * 1-5", "is not a valid cron expression"),
                       ("30 16 * * 0", "never falls on an XNYS session")):
        done = create(cron)
        assert done.returncode == 1, (cron, done.stdout, done.stderr)
        assert "error 422" in done.stderr and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    intraday = tickrun(api_env, tmp_path, "schedules", "create", "--model", str(model["id"]),
                       "--cron", CRON, "--mode", "intraday", "--symbol", "MSFT",
                       "--sessions", "3")
    assert intraday.returncode == 1 and "`sessions` is for daily schedules" in \
        intraday.stderr, intraday.stderr
    usage = create(CRON, "--param", "fast")
    assert usage.returncode == 2 and "give key=value" in usage.stderr
    assert ok_json(api_env, tmp_path, "schedules", "ls")["items"] == []
    missing = tickrun(api_env, tmp_path, "schedules", "get", "999")
    assert missing.returncode == 1 and "schedule 999 not found" in missing.stderr
