"""The run lifecycle through real HTTP, on PostgreSQL + Redis and on SQLite."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from controller.local import LocalExecutor
from core.records import Order, Side
from core.store import open_store
from runner.trading import TradingService
from tests.apiserver import Backend, running_api, wait_for, wait_status
from tests.factories import daily_spec, make_model, make_run
from tests.processes import kill_runner

pytestmark = pytest.mark.timeout(240)

SLOW = {"TICKRUN_RUNNER_STEP_DELAY_SECONDS": "0.03"}  # 390 steps take ~12 s: time to act
DECIDED = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
FILLED_AT = dt.datetime(2024, 1, 3, tzinfo=dt.UTC)


def create_model(c: httpx.Client, signature: str = "sma") -> int:
    r = c.post("/v1/models", json={"signature": signature, "parameters": {"note": "test"}})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def daily(model_id: int, **kw: Any) -> dict[str, Any]:
    return {"model_id": model_id, "mode": "daily", "symbols": ["MSFT"], "start": "2024-01-02",
            "end": "2024-04-30", "decider": "sma_crossover", "data": "synthetic",
            "decider_params": {"fast": 3, "slow": 8}, **kw}


def intraday(model_id: int, **kw: Any) -> dict[str, Any]:
    return {"model_id": model_id, "mode": "intraday", "symbols": ["AAPL"],
            "date": "2025-03-03", "decider": "sma_crossover", "data": "synthetic",
            "decider_params": {"fast": 3, "slow": 10}, **kw}


def create(c: httpx.Client, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = c.post("/v1/runs", json=body, **kw)
    assert r.status_code == 201, r.text
    return dict(r.json())


def sse_events(c: httpx.Client, run_id: int, last_id: str | None = None,
               limit: int | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    got: list[tuple[str, str, dict[str, Any]]] = []
    with connect_sse(c, "GET", f"/v1/runs/{run_id}/events", headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            if not sse.data:  # a heartbeat comment: httpx_sse repeats the last id with it
                continue
            got.append((sse.id, sse.event, json.loads(sse.data)))
            if sse.event == "result" or (limit and len(got) >= limit):
                break
    return got


def test_daily_run_completes_with_its_records(backend: Backend) -> None:
    with running_api(backend) as api, api.client() as c:
        model_id = create_model(c)
        run = create(c, daily(model_id))
        assert run["status"] == "queued" and run["progress"]["total"] == 83
        events = sse_events(c, run["id"])
        done = wait_status(c, run["id"], {"completed"})

        ids = [e[0] for e in events]
        assert len(ids) == len(set(ids)) and events[-1][1] == "result"
        assert {"status", "progress", "decision", "result"} <= {e[1] for e in events}
        assert done["progress"]["step"] == 83 and done["finished_at"]
        result = done["result"]
        assert result["steps_done"] == 83 and result["benchmark"]["return_pct"] is not None
        decisions = c.get(f"/v1/runs/{run['id']}/decisions").json()
        assert [d["step"] for d in decisions] == list(range(83))
        trades = c.get(f"/v1/runs/{run['id']}/trades").json()
        assert len(trades) == result["trades"] + result["refused"] > 0
        assert len(c.get(f"/v1/runs/{run['id']}/positions").json()) == result["trades"]
        assert c.get(f"/v1/runs/{run['id']}/result").json()["result"] == result


def test_stop_mid_session_keeps_partial_results(backend: Backend) -> None:
    with running_api(backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        wait_for(lambda: c.get(f"/v1/runs/{run['id']}").json()["progress"]["step"] >= 40)
        r = c.post(f"/v1/runs/{run['id']}/stop")
        assert r.status_code == 202 and r.json()["status"] in ("stopping", "stopped")
        stopped = wait_status(c, run["id"], {"stopped"}, timeout=30)
        assert 40 <= stopped["progress"]["step"] < 390
        assert stopped["result"]["steps_done"] == stopped["progress"]["step"]
        assert stopped["stop_requested_at"] is not None
        trades = c.get(f"/v1/runs/{run['id']}/trades").json()
        assert len(trades) == stopped["result"]["trades"] + stopped["result"]["refused"]
        again = c.post(f"/v1/runs/{run['id']}/stop")
        assert again.status_code == 202 and again.json()["status"] == "stopped"
        assert sse_events(c, run["id"])[-1][2]["data"]["status"] == "stopped"


def test_limits_queue_instead_of_refusing_and_admit_when_a_slot_frees(
        backend: Backend) -> None:
    with running_api(backend, per_user=1, runner_env=SLOW) as api, api.client() as c, \
            api.client("user-b") as b:
        first = create(c, intraday(create_model(c)))
        second = create(c, intraday(first["model_id"], symbols=["MSFT"]))
        other = create(b, daily(create_model(b)))  # another user's slot is their own
        wait_status(c, first["id"], {"running"})
        wait_status(b, other["id"], {"completed"})
        assert c.get(f"/v1/runs/{second['id']}").json()["status"] == "queued"
        c.post(f"/v1/runs/{first['id']}/stop")
        wait_status(c, first["id"], {"stopped"}, timeout=30)
        admitted = wait_status(c, second["id"], {"running", "completed"})
        assert admitted["admitted_at"] is not None
        c.post(f"/v1/runs/{second['id']}/stop")
        wait_status(c, second["id"], {"stopped", "completed"}, timeout=30)


def test_a_queued_run_stops_without_ever_starting(backend: Backend) -> None:
    with running_api(backend, per_user=1, runner_env=SLOW) as api, api.client() as c:
        first = create(c, intraday(create_model(c)))
        queued = create(c, intraday(first["model_id"], symbols=["MSFT"]))
        r = c.post(f"/v1/runs/{queued['id']}/stop")
        assert r.status_code == 202 and r.json()["status"] == "stopped"
        assert r.json()["status_reason"] == "stopped before it started"
        stop_all = c.post("/v1/runs/stop-all").json()
        assert stop_all["stopping"] == [first["id"]]
        wait_status(c, first["id"], {"stopped"}, timeout=30)
        final = c.get(f"/v1/runs/{queued['id']}").json()
        assert final["attempts"] == 0 and final["started_at"] is None


def test_delete_stops_then_removes_everything(backend: Backend) -> None:
    with running_api(backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        wait_for(lambda: c.get(f"/v1/runs/{run['id']}").json()["progress"]["step"] >= 5)
        assert c.delete(f"/v1/runs/{run['id']}").status_code == 204
        for path in ("", "/trades", "/decisions", "/events", "/result"):
            assert c.get(f"/v1/runs/{run['id']}{path}").status_code == 404
        assert c.delete(f"/v1/runs/{run['id']}").status_code == 404
        assert backend.event_log().read(run["id"]) == []


def test_idempotency_key(backend: Backend) -> None:
    with running_api(backend, per_user=1) as api, api.client() as c:
        body = daily(create_model(c))
        headers = {"Idempotency-Key": "order-42"}
        first = c.post("/v1/runs", json=body, headers=headers)
        again = c.post("/v1/runs", json=body, headers=headers)
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        other = c.post("/v1/runs", json={**body, "initial_cash": "5000"}, headers=headers)
        assert other.status_code == 409
        assert other.headers["content-type"] == "application/problem+json"
        assert len(c.get("/v1/runs").json()["items"]) == 1


def test_users_never_see_each_others_runs_or_models(backend: Backend) -> None:
    with running_api(backend) as api, api.client() as a, api.client("user-b") as b:
        model_id = create_model(a)
        run = create(a, daily(model_id))
        rid = run["id"]
        for method, path in (("GET", f"/v1/runs/{rid}"), ("POST", f"/v1/runs/{rid}/stop"),
                             ("DELETE", f"/v1/runs/{rid}"), ("GET", f"/v1/runs/{rid}/trades"),
                             ("GET", f"/v1/runs/{rid}/decisions"),
                             ("GET", f"/v1/runs/{rid}/positions"),
                             ("GET", f"/v1/runs/{rid}/orders"),
                             ("GET", f"/v1/runs/{rid}/result"),
                             ("GET", f"/v1/runs/{rid}/events"),
                             ("GET", f"/v1/models/{model_id}"),
                             ("PATCH", f"/v1/models/{model_id}"),
                             ("DELETE", f"/v1/models/{model_id}")):
            r = b.request(method, path, json={} if method == "PATCH" else None)
            assert r.status_code == 404, (method, path, r.status_code)
        assert b.get("/v1/runs").json()["items"] == []
        assert b.get("/v1/models").json()["items"] == []
        # B cannot trade with A's model nor replay A's run.
        assert b.post("/v1/runs", json=daily(model_id)).status_code == 422
        own = create_model(b)
        replay = daily(own, decider="replay", decider_params={"source_run_id": rid})
        assert b.post("/v1/runs", json=replay).status_code == 422
        b.post("/v1/runs/stop-all")
        assert wait_status(a, rid, {"completed"})["status"] == "completed"


def test_list_filters_and_cursor_pagination(backend: Backend) -> None:
    with running_api(backend, per_user=1, global_=1) as api, api.client() as c:
        m1, m2 = create_model(c, "one"), create_model(c, "two")
        ids = [create(c, daily(m1 if i % 2 else m2, symbols=[sym]))["id"]
               for i, sym in enumerate(["AAPL", "MSFT", "AAPL", "NVDA", "AAPL"])]
        seen, cursor = [], None
        while True:
            page = c.get("/v1/runs", params={"limit": 2, **({"cursor": cursor} if cursor
                                                             else {})}).json()
            seen += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(ids, reverse=True)
        aapl = c.get("/v1/runs", params={"symbol": "aapl"}).json()["items"]
        assert sorted(r["id"] for r in aapl) == [ids[0], ids[2], ids[4]]
        by_model = c.get("/v1/runs", params={"model_id": m1}).json()["items"]
        assert sorted(r["id"] for r in by_model) == [ids[1], ids[3]]
        assert c.get("/v1/runs", params={"mode": "intraday"}).json()["items"] == []
        # A cursor's format is in the schema: anything else is refused as such.
        bad = c.get("/v1/runs", params={"cursor": "garbage!"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "cursor"]
        assert bad.headers["content-type"] == "application/problem+json"
        # Every cursor of the pattern is one the server takes: ids below 2**63.
        top = c.get("/v1/runs", params={"cursor": "f__________"})
        assert top.status_code == 200 and len(top.json()["items"]) == 5
        c.post("/v1/runs/stop-all")


def test_models_crud(backend: Backend) -> None:
    with running_api(backend) as api, api.client() as c:
        body = {"signature": "momentum", "llm": "openai/gpt-4.1-mini",
                "custom_rules": "no more than 50% in one name", "parameters": {"x": 1}}
        created = c.post("/v1/models", json=body)
        assert created.status_code == 201 and created.json()["llm"] == "openai/gpt-4.1-mini"
        mid = created.json()["id"]
        assert c.post("/v1/models", json=body).status_code == 409  # signature per user
        patched = c.patch(f"/v1/models/{mid}", json={"custom_instructions": "trade the open"})
        assert patched.json()["custom_instructions"] == "trade the open"
        assert patched.json()["custom_rules"] == body["custom_rules"]
        run = create(c, daily(mid))
        assert c.delete(f"/v1/models/{mid}").status_code == 409  # it has runs
        wait_status(c, run["id"], {"completed"})
        assert c.delete(f"/v1/runs/{run['id']}").status_code == 204
        assert c.delete(f"/v1/models/{mid}").status_code == 204
        assert c.get(f"/v1/models/{mid}").status_code == 404


def test_a_runner_killed_without_saving_is_finalized_from_the_ledger(
        backend: Backend) -> None:
    """No restarts left (backoff limit 0): the kill is the end, finalized from the ledger."""
    executor = LocalExecutor(backend.runner_env(**SLOW), log_dir=backend.log_dir,
                             backoff_limit=0)
    with running_api(backend, executor=executor) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        wait_for(lambda: c.get(f"/v1/runs/{run['id']}").json()["progress"]["step"] >= 20)
        kill_runner(run["id"])
        failed = wait_status(c, run["id"], {"failed"}, timeout=30)
        assert failed["status_reason"] == "runner killed by SIGKILL after 0 restarts"
        result = failed["result"]
        assert result["from_ledger"] is True and result["steps_done"] >= 20
        assert sse_events(c, run["id"])[-1][2]["data"]["status"] == "failed"


def test_a_killed_runner_is_replaced_and_the_run_resumes(backend: Backend) -> None:
    """A signal death is retried like exit 1 (as a Job's pod that died is): the new
    runner resumes after the checkpoint and every step is decided once."""
    with running_api(backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        wait_for(lambda: c.get(f"/v1/runs/{run['id']}").json()["progress"]["step"] >= 20)
        kill_runner(run["id"])
        done = wait_status(c, run["id"], {"completed", "failed"}, timeout=90)
        assert done["status"] == "completed" and done["attempts"] == 2, done
        decisions = c.get(f"/v1/runs/{run['id']}/decisions?limit=500").json()
        assert [d["step"] for d in decisions] == list(range(390))


def test_trades_filter_by_status_before_the_limit_and_show_fill_times(
        backend: Backend) -> None:
    """A run's ledger written directly (no runner: the reconciler is off): five fills
    decided on one bar and filled on the next, then two refusals."""
    store = open_store(backend.database_url)
    try:
        run = make_run(store, daily_spec(), model=make_model(store, "user-a", "ledger"),
                       admit=False)
        trading = TradingService(store)
        for seq in range(7):
            qty = Decimal(1) if seq < 5 else Decimal(10**9)  # the last two are refused
            trading.execute(run.id, 0, seq, Order(Side.BUY, "MSFT", qty), price=Decimal(10),
                            bar_time=DECIDED, filled_at=FILLED_AT)
    finally:
        store.close()
    with running_api(backend, reconcile=False) as api, api.client() as c:
        trades = f"/v1/runs/{run.id}/trades"
        first_page = c.get(trades, params={"limit": 3}).json()
        assert [t["status"] for t in first_page] == ["filled"] * 3
        assert {(t["bar_time"], t["filled_at"]) for t in first_page} == {
            ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z")}
        refused = c.get(trades, params={"status": "refused", "limit": 3}).json()
        assert [(t["seq"], t["status"], t["filled_at"]) for t in refused] == [
            (5, "refused", None), (6, "refused", None)]
        # Keyset pages of one status: after the last id seen, still only that status.
        page1 = c.get(trades, params={"status": "filled", "limit": 2}).json()
        page2 = c.get(trades, params={"status": "filled", "limit": 2,
                                      "after_id": page1[-1]["id"]}).json()
        page3 = c.get(trades, params={"status": "filled", "limit": 2,
                                      "after_id": page2[-1]["id"]}).json()
        assert [t["seq"] for t in page1 + page2 + page3] == [0, 1, 2, 3, 4]
        positions = c.get(f"/v1/runs/{run.id}/positions").json()
        assert [(p["seq"], p["bar_time"], p["filled_at"]) for p in positions] == [
            (seq, "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z") for seq in range(5)]
