"""Schedules through real HTTP, on PostgreSQL + Redis and on SQLite: a cron rule in New
York time that fires only on XNYS sessions, each due time once, through the embedded
reconciler (its clock injected, so a past week with a holiday and a half day is played)
and real runner processes."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from core import calendar
from core.marketdata.settings import MarketDataSettings
from core.store.sql import SqlStore
from tests.apiserver import ApiServer, Backend, running_api, wait_for, wait_status
from tests.integration.test_api_runs import create_model

pytestmark = pytest.mark.timeout(180)

NEW_YORK = ZoneInfo("America/New_York")


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


def when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def daily_schedule(model_id: int, **kw: Any) -> dict[str, Any]:
    return {"name": "after the close", "model_id": model_id, "cron": "30 16 * * 1-5",
            "mode": "daily", "symbols": ["MSFT"], "data": "synthetic",
            "decider": "sma_crossover", "sessions": 3, **kw}


def intraday_schedule(model_id: int, **kw: Any) -> dict[str, Any]:
    return {"name": "at the open", "model_id": model_id, "cron": "25 9 * * *",
            "mode": "intraday", "symbols": ["AAPL"], "session": "today",
            "data": "synthetic", "decider": "sma_crossover",
            "decider_params": {"fast": 3, "slow": 10}, "make_up_seconds": 3600, **kw}


def create_schedule(c: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/v1/schedules", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def fires(c: httpx.Client, schedule_id: int) -> list[dict[str, Any]]:
    r = c.get(f"/v1/schedules/{schedule_id}/fires")
    assert r.status_code == 200, r.text
    return list(r.json())


def schedule_runs(c: httpx.Client, schedule_id: int) -> list[dict[str, Any]]:
    r = c.get("/v1/runs", params={"schedule_id": schedule_id, "limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def assert_problem(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    detail = r.json()["detail"]
    for word in words:
        assert word in detail, detail


def rewind(api: ApiServer, schedule_id: int, through: dt.datetime) -> None:
    """Set the schedule's fired_through as if every due time up to `through` were done.

    A schedule's first due time is after its creation, which is the real now (the store
    and the API read the wall clock); the embedded reconciler reads the injected clock.
    To have it fire a past week, the schedule is moved back to that week by hand, as a
    schedule created then would stand."""
    sql = cast(SqlStore, api.services.store)
    with sql._tx(write=True) as cur:
        cur.run("UPDATE schedules SET fired_through = %s WHERE id = %s",
                (sql.dialect.time(through.astimezone(dt.UTC)), schedule_id))


def passes() -> float:
    return REGISTRY.get_sample_value("tickrun_controller_reconcile_seconds_count") or 0.0


def settle(api: ApiServer) -> None:
    """Until a whole reconcile pass has run that started after this call (so it read the
    clock as the test has set it): the second pass to end from now, the first one
    having possibly started before."""
    target = passes() + 2

    def done() -> bool:
        api.services.wake_controller()
        return passes() >= target
    wait_for(done, timeout=30, interval=0.005)


def test_a_daily_schedule_is_stored_with_its_next_session_fires(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as c:
        model_id = create_model(c)
        r = c.post("/v1/schedules", json=daily_schedule(model_id))
        assert r.status_code == 201, r.text
        made = r.json()
        assert r.headers["Location"] == f"/v1/schedules/{made['id']}"
        assert (made["name"], made["model_id"], made["cron"]) == (
            "after the close", model_id, "30 16 * * 1-5")
        assert (made["timezone"], made["calendar"]) == ("America/New_York", "XNYS")
        assert not made["paused"] and made["recent_fires"] == []
        assert made["make_up_seconds"] == 3600

        upcoming = [when(f) for f in made["next_fires"]]
        assert len(upcoming) == 3 and upcoming == sorted(set(upcoming))
        assert upcoming[0] > dt.datetime.now(dt.UTC)
        for fire in upcoming:
            local = fire.astimezone(NEW_YORK)
            assert calendar.is_session(local.date()), local
            assert (local.hour, local.minute, local.second) == (16, 30, 0), local
        # Consecutive sessions: a weekday that is a holiday is passed over, not fired.
        days = [f.astimezone(NEW_YORK).date() for f in upcoming]
        assert days == calendar.sessions_in_range(days[0], days[-1])

        template = made["template"]
        assert template["mode"] == "daily" and template["symbols"] == ["MSFT"]
        assert template["session"] == "last_closed" and template["sessions"] == 3
        assert template["data"] == "synthetic" and template["decider"] == "sma_crossover"
        assert not {"model_id", "cron", "name", "make_up_seconds", "start", "end",
                    "date"} & set(template)

        got = c.get(f"/v1/schedules/{made['id']}")
        assert got.status_code == 200 and got.json() == made
        page = c.get("/v1/schedules").json()
        assert page == {"items": [made], "next_cursor": None}

        # Newest first, a page at a time.
        second = create_schedule(c, intraday_schedule(model_id))
        assert second["template"]["session"] == "today" and "sessions" not in second[
            "template"]
        first_page = c.get("/v1/schedules", params={"limit": 1}).json()
        assert [s["id"] for s in first_page["items"]] == [second["id"]]
        assert first_page["next_cursor"]
        rest = c.get("/v1/schedules",
                     params={"limit": 1, "cursor": first_page["next_cursor"]}).json()
        assert [s["id"] for s in rest["items"]] == [made["id"]] and rest["next_cursor"] is None
        # Created, not fired: no run is made until a due time.
        assert c.get("/v1/runs").json()["items"] == []


def test_a_bad_schedule_is_refused_and_nothing_is_stored(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as c:
        model_id = create_model(c)
        for cron, words in (("61 * * * *", ("61 * * * *",)),
                            ("* * * *", ("five fields",)),
                            ("@reboot", ("five fields",))):
            r = c.post("/v1/schedules", json=daily_schedule(model_id, cron=cron))
            assert_problem(r, 422, *words)
        assert_problem(c.post("/v1/schedules", json=intraday_schedule(model_id, sessions=3)),
                       422, "`sessions` is for daily schedules")
        assert_problem(c.post("/v1/schedules", json=daily_schedule(
            model_id, decider="replay", decider_params={"source_run_id": 1})),
            422, "cannot replay")
        assert_problem(c.post("/v1/schedules", json=daily_schedule(999)),
                       422, "model 999 not found")
        assert_problem(c.post("/v1/schedules", json=daily_schedule(model_id,
                                                                  cron="0 12 * * 0")),
                       422, "never falls on an XNYS session")
        assert_problem(c.post("/v1/schedules", json=daily_schedule(model_id, every="day")),
                       422, "every")
        assert_problem(c.post("/v1/schedules", json=daily_schedule(
            model_id, symbols=["MSFT", "MSFT"])), 422, "distinct")
        # Under a minute (the cron's resolution), a pass a moment late would miss it.
        assert_problem(c.post("/v1/schedules", json=daily_schedule(
            model_id, make_up_seconds=0)), 422, "make_up_seconds")

        assert c.get("/v1/schedules").json() == {"items": [], "next_cursor": None}
        assert c.get("/v1/runs").json()["items"] == []


def test_a_provider_schedule_is_checked_as_of_its_fire_time(backend: Backend) -> None:
    """A provider's bars are final after the close: a fire after the close is accepted
    whatever the time of the request (the data source resolved then and stored); a fire
    that plays its own day's session before the close is no run."""
    polygon = MarketDataSettings(polygon_api_key=SecretStr("k"), alpaca_api_key_id=None)
    with running_api(backend, reconcile=False, market_data=polygon) as api, \
            api.client() as c:
        model_id = create_model(c)
        after_close = {k: v for k, v in daily_schedule(model_id).items() if k != "data"}
        made = create_schedule(c, after_close)
        assert made["template"]["data"] == "polygon"
        at_open = {k: v for k, v in intraday_schedule(model_id, cron="25 9 * * 1-5").items()
                   if k != "data"}
        assert_problem(c.post("/v1/schedules", json=at_open), 422, "has not closed yet")
        assert [s["id"] for s in c.get("/v1/schedules").json()["items"]] == [made["id"]]


def test_a_schedule_is_its_users_alone(backend: Backend) -> None:
    with running_api(backend, reconcile=False) as api, api.client() as a, \
            api.client("user-b") as b:
        mine = create_schedule(a, daily_schedule(create_model(a)))
        sid = mine["id"]
        for r in (b.get(f"/v1/schedules/{sid}"), b.get(f"/v1/schedules/{sid}/fires"),
                  b.post(f"/v1/schedules/{sid}/pause"),
                  b.post(f"/v1/schedules/{sid}/resume"),
                  b.delete(f"/v1/schedules/{sid}")):
            assert_problem(r, 404, f"schedule {sid} not found")
        assert b.get("/v1/schedules").json() == {"items": [], "next_cursor": None}
        # Their model is not a model of mine: refused, not stored.
        assert_problem(b.post("/v1/schedules", json=daily_schedule(mine["model_id"])),
                       422, f"model {mine['model_id']} not found")
        assert b.get("/v1/schedules").json()["items"] == []
        # Untouched by the other user's attempts.
        assert a.get(f"/v1/schedules/{sid}").json() == mine
        assert [s["id"] for s in a.get("/v1/schedules").json()["items"]] == [sid]
        assert_problem(a.get("/v1/schedules/999999"), 404)


def test_pause_resume_and_delete_keep_the_runs_it_made(backend: Backend) -> None:
    now = [ny(2025, 12, 2, 9)]
    with running_api(backend, clock=lambda: now[0]) as api, api.client() as c:
        made = create_schedule(c, intraday_schedule(create_model(c)))
        sid = made["id"]
        paused = c.post(f"/v1/schedules/{sid}/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True and paused.json()["next_fires"] == []
        assert c.post(f"/v1/schedules/{sid}/pause").json()["paused"] is True  # idempotent
        assert c.get(f"/v1/schedules/{sid}").json()["next_fires"] == []

        # While paused, its 09:25 due time (after a rewind; see rewind) makes no run.
        rewind(api, sid, ny(2025, 12, 2, 8))
        now[0] = ny(2025, 12, 2, 9, 30)
        settle(api)
        assert fires(c, sid) == [] and schedule_runs(c, sid) == []

        resumed = c.post(f"/v1/schedules/{sid}/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["paused"] is False
        assert resumed.json()["next_fires"] == made["next_fires"]
        # Resumed from now on: the due time passed while paused is not made up.
        settle(api)
        assert fires(c, sid) == [] and schedule_runs(c, sid) == []

        rewind(api, sid, ny(2025, 12, 2, 9))
        settle(api)
        [fire] = fires(c, sid)
        assert fire["outcome"] == "fired" and fire["run_id"] is not None
        assert when(fire["due_at"]) == ny(2025, 12, 2, 9, 25)
        run = wait_status(c, fire["run_id"], {"completed"}, timeout=60)
        assert run["schedule_id"] == sid and run["spec"]["date"] == "2025-12-02"

        gone = c.delete(f"/v1/schedules/{sid}")
        assert gone.status_code == 204 and gone.content == b""
        for r in (c.get(f"/v1/schedules/{sid}"), c.get(f"/v1/schedules/{sid}/fires"),
                  c.post(f"/v1/schedules/{sid}/pause"), c.post(f"/v1/schedules/{sid}/resume"),
                  c.delete(f"/v1/schedules/{sid}")):
            assert_problem(r, 404, f"schedule {sid} not found")
        assert c.get("/v1/schedules").json()["items"] == []
        kept = c.get(f"/v1/runs/{run['id']}")
        assert kept.status_code == 200, kept.text
        assert kept.json()["status"] == "completed" and kept.json()["schedule_id"] is None
        assert schedule_runs(c, sid) == []


def test_a_schedule_fires_once_on_each_session_through_the_reconciler(
        backend: Backend) -> None:
    # Thanksgiving week of 2025: closed Thursday 11-27, a half day (13:00 close) on
    # Friday 11-28, then a weekend.
    start, end = ny(2025, 11, 25, 12), ny(2025, 12, 2, 10)
    due = [ny(2025, 11, 26, 9, 25), ny(2025, 11, 28, 9, 25), ny(2025, 12, 1, 9, 25),
           ny(2025, 12, 2, 9, 25)]
    now = [start]
    with running_api(backend, clock=lambda: now[0]) as api, api.client() as c:
        made = create_schedule(c, intraday_schedule(create_model(c)))
        sid = made["id"]
        rewind(api, sid, start)  # as if created on Tuesday 11-25 at noon
        settle(api)
        assert fires(c, sid) == []

        # An hour at a time: each due time is found 35 minutes late, within the make-up
        # window, and fired in the first pass that sees it, not before.
        while now[0] < end:
            now[0] += dt.timedelta(hours=1)
            settle(api)
            recorded = fires(c, sid)
            assert [when(f["due_at"]) for f in reversed(recorded)] == [
                d for d in due if d <= now[0]], now[0]
            assert all(f["outcome"] == "fired" and f["run_id"] for f in recorded), recorded

        runs = {r["spec"]["date"]: r for r in schedule_runs(c, sid)}
        assert len(schedule_runs(c, sid)) == 4
        assert {day: r["progress"]["total"] for day, r in runs.items()} == {
            "2025-11-26": 390, "2025-11-28": 210, "2025-12-01": 390, "2025-12-02": 390}
        for run in runs.values():
            assert run["schedule_id"] == sid and run["model_id"] == made["model_id"]
            spec = run["spec"]
            assert (spec["mode"], spec["symbols"], spec["data"], spec["decider"]) == (
                "intraday", ["AAPL"], "synthetic", "sma_crossover")
            assert spec["decider_params"] == {"fast": 3, "slow": 10}
        recorded = fires(c, sid)
        assert [(when(f["due_at"]), f["outcome"], f["run_id"], f["reason"])
                for f in recorded] == [
            (d, "fired", runs[d.date().isoformat()]["id"], None) for d in reversed(due)]
        for run in runs.values():
            done = wait_status(c, run["id"], {"completed"}, timeout=60)
            assert done["progress"]["step"] == run["progress"]["total"]

        # Three days on at once (no controller led meanwhile): Wednesday to Friday's due
        # times are 2 h 35 min late at the least, past the hour of make-up: missed.
        now[0] = ny(2025, 12, 5, 12)
        settle(api)
        recorded = fires(c, sid)
        missed = [ny(2025, 12, 5, 9, 25), ny(2025, 12, 4, 9, 25), ny(2025, 12, 3, 9, 25)]
        assert [when(f["due_at"]) for f in recorded[:3]] == missed
        for fire in recorded[:3]:
            assert fire["outcome"] == "missed" and fire["run_id"] is None, fire
            assert "past the make-up window of 60m" in fire["reason"], fire
        assert len(recorded) == 7 and len(schedule_runs(c, sid)) == 4

        # Monday's due time found 30 minutes late, within the window: made.
        now[0] = ny(2025, 12, 8, 9, 55)
        settle(api)
        latest = fires(c, sid)[0]
        assert (when(latest["due_at"]), latest["outcome"]) == (ny(2025, 12, 8, 9, 25),
                                                               "fired")
        monday = c.get(f"/v1/runs/{latest['run_id']}").json()
        assert monday["schedule_id"] == sid and monday["spec"]["date"] == "2025-12-08"
        assert len(schedule_runs(c, sid)) == 5
        shown = c.get(f"/v1/schedules/{sid}").json()
        assert [f["due_at"] for f in shown["recent_fires"]] == [
            f["due_at"] for f in fires(c, sid)]
        wait_status(c, monday["id"], {"completed"}, timeout=60)
        settle(api)  # nothing more is due: no second run of any due time
        assert len(fires(c, sid)) == 8 and len(schedule_runs(c, sid)) == 5
