"""The console's routes over plain HTTP: who may see what, what each page holds, and
that text from users and agents is escaped."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from api.ui.render import NEW_YORK
from core.records import Decision
from tests.apiserver import ApiServer, Backend, running_api, token, wait_status
from tests.integration.test_api_batches import daily_batch, models
from tests.integration.test_api_orders import DAY0, DAY1, write_ledger
from tests.integration.test_api_runs import create, create_model, daily, intraday
from tests.integration.test_api_schedules import daily_schedule

pytestmark = pytest.mark.timeout(180)
HTML = {"Accept": "text/html"}
XSS = '<img src=x onerror="document.title=\'pwned\'"><script>alert(1)</script>'


@contextmanager
def browser_like(api: ApiServer, user_id: str = "user-a") -> Iterator[httpx.Client]:
    """A client that signs in as a browser does: the token once, then the cookie."""
    with httpx.Client(base_url=api.url, timeout=30, headers=HTML) as c:
        r = c.post("/ui/login", data={"token": token(user_id), "next": "/ui"})
        assert r.status_code == 303 and r.headers["location"] == "/ui", r.text
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def test_without_credentials_every_route_is_401(ui_backend: Backend) -> None:
    with running_api(ui_backend, reconcile=False) as api, httpx.Client(base_url=api.url) as c:
        page = c.get("/ui", headers=HTML)
        assert page.status_code == 401 and 'Bearer realm="tickrun"' in page.headers[
            "www-authenticate"]
        assert "Sign in" in page.text and 'name="next" value="/ui"' in page.text
        for path in ("/ui/runs.json", "/ui/runs/1/chart.json", "/ui/runs/1/events"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.headers["content-type"].startswith("application/problem+json"), path
        bad = c.get("/ui", headers={**HTML, "Cookie": "tickrun_session=not-a-token"})
        assert bad.status_code == 401 and "expired" in bad.text
        stale = token("user-a", expires_in=-3600)
        expired = c.get("/ui", headers={**HTML, "Cookie": f"tickrun_session={stale}"})
        assert expired.status_code == 401
        assert c.post("/ui/runs/1/stop").status_code == 401
        assert c.post("/ui/stop-all").status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_for_the_console(ui_backend: Backend) -> None:
    with running_api(ui_backend, reconcile=False) as api, httpx.Client(base_url=api.url) as c:
        refused = c.post("/ui/login", data={"token": "nonsense"}, headers=HTML)
        assert refused.status_code == 401 and "not valid" in refused.text
        r = c.post("/ui/login", data={"token": token("user-a"), "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/ui"  # never off-site
        cookie = r.headers["set-cookie"]
        for part in ("tickrun_session=", "HttpOnly", "Path=/ui", "SameSite=strict"):
            assert part.lower() in cookie.lower(), cookie
        assert c.get("/ui", headers=HTML).status_code == 200
        # A token in the address bar signs in only on the embedded default (dev mode).
        ignored = c.get("/ui/login", params={"token": token("user-a")})
        assert ignored.status_code == 200 and "set-cookie" not in ignored.headers


def test_the_dev_link_signs_in_the_dev_user(ui_backend: Backend) -> None:
    with running_api(ui_backend, reconcile=False, auth_mode="dev",
                     dev_token=SecretStr("dev-secret")) as api, \
            httpx.Client(base_url=api.url, headers=HTML) as c:
        assert c.get("/ui/login", params={"token": "wrong"}).status_code == 401
        r = c.get("/ui/login", params={"token": "dev-secret"})
        assert r.status_code == 303 and r.headers["location"] == "/ui"
        page = c.get("/ui")
        assert page.status_code == 200 and ">dev<" in page.text


def test_pages_show_the_callers_runs_and_404_for_anyone_elses(ui_backend: Backend) -> None:
    with running_api(ui_backend) as api, api.client() as c, browser_like(api) as ui, \
            browser_like(api, "user-b") as other:
        run = create(c, daily(create_model(c)))
        wait_status(c, run["id"], {"completed"})
        listing = ui.get("/ui")
        assert listing.status_code == 200 and f'data-run="{run["id"]}"' in listing.text
        page = ui.get(f"/ui/runs/{run['id']}")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert "script-src 'self';" in page.headers["content-security-policy"]
        decisions = c.get(f"/v1/runs/{run['id']}/decisions").json()
        assert page.text.count('<li class="decision o-') == len(decisions)
        result = c.get(f"/v1/runs/{run['id']}/result").json()["result"]
        assert f'id="result-trades">{result["trades"]}<' in page.text
        chart = ui.get(f"/ui/runs/{run['id']}/chart.json").json()
        fills = [t for t in c.get(f"/v1/runs/{run['id']}/trades").json()
                 if t["status"] == "filled"]
        assert len(chart["symbols"]["MSFT"]["fills"]) == len(fills) > 0
        assert len(chart["equity"]) == len(decisions) == len(chart["benchmark"])
        assert chart["benchmark"][-1]["value"] == pytest.approx(
            float(result["benchmark"]["final_equity"]), abs=0.01)
        assert ui.get("/ui/runs.json").json()[0]["status"] == "completed"
        for path in (f"/ui/runs/{run['id']}", "/ui/runs/999999"):
            missing = other.get(path)
            assert missing.status_code == 404 and "Not found" in missing.text, path
            assert "MSFT" not in missing.text
        ledger = ui.get(f"/ui/runs/{run['id']}/ledger")
        assert ledger.status_code == 200 and ledger.text.startswith('<div class="two" id="ledger">')
        orders = c.get(f"/v1/runs/{run['id']}/orders").json()
        assert ledger.text.count("<tr data-order=") == len(orders) > 0
        assert other.get(f"/ui/runs/{run['id']}/ledger").status_code == 404
        assert other.get(f"/ui/runs/{run['id']}/chart.json",
                         headers={"Accept": "application/json"}).status_code == 404
        assert other.get(f"/ui/runs/{run['id']}/events",
                         headers={"Accept": "text/event-stream"}).status_code == 404
        assert other.get("/ui/runs.json").json() == []


def test_reasoning_and_names_are_text_never_markup(ui_backend: Backend) -> None:
    with running_api(ui_backend, reconcile=False) as api, api.client() as c, \
            browser_like(api) as ui:
        run = create(c, intraday(create_model(c)))
        api.services.store.record_decision(Decision(
            run_id=run["id"], step=0, bar_time=dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC),
            action="hold", orders=[], reasoning=XSS, outcome="hold", latency_ms=1.0,
            tool_calls=[{"name": XSS, "args": {"q": XSS}, "answer": XSS}],
            equity=Decimal(100_000), cash=Decimal(100_000)))
        page = ui.get(f"/ui/runs/{run['id']}")
        assert page.status_code == 200
        assert XSS not in page.text and "<script>alert" not in page.text
        assert "&lt;img src=x onerror=" in page.text


def test_forms_need_their_csrf_field_and_stop_and_delete_work(ui_backend: Backend) -> None:
    with running_api(ui_backend, reconcile=False) as api, api.client() as c, \
            browser_like(api) as ui:
        model_id = create_model(c)
        run = create(c, intraday(model_id))
        forged = ui.post(f"/ui/runs/{run['id']}/stop", data={"csrf": "0" * 64})
        assert forged.status_code == 403
        assert c.get(f"/v1/runs/{run['id']}").json()["status"] == "queued"
        csrf = csrf_of(ui.get(f"/ui/runs/{run['id']}").text)
        stop = ui.post(f"/ui/runs/{run['id']}/stop", data={"csrf": csrf})
        assert stop.status_code == 303 and stop.headers["location"] == f"/ui/runs/{run['id']}"
        assert c.get(f"/v1/runs/{run['id']}").json()["status"] == "stopped"
        second = create(c, intraday(model_id))
        confirm = ui.get("/ui/stop-all")
        assert confirm.status_code == 200 and f"#{second['id']}" in confirm.text
        done = ui.post("/ui/stop-all", data={"csrf": csrf})
        assert done.status_code == 303 and done.headers["location"] == "/ui?stopped=1"
        assert c.get(f"/v1/runs/{second['id']}").json()["status"] == "stopped"
        gone = ui.post(f"/ui/runs/{run['id']}/delete", data={"csrf": csrf})
        assert gone.status_code == 303 and gone.headers["location"] == "/ui"
        assert c.get(f"/v1/runs/{run['id']}").status_code == 404


def test_batch_and_schedule_pages(ui_backend: Backend) -> None:
    with running_api(ui_backend, per_user=4) as api, api.client() as c, \
            browser_like(api) as ui, browser_like(api, "user-b") as other:
        batch = c.post("/v1/batches", json=daily_batch(models(c, "alpha"), name=XSS,
                                                       symbols=["MSFT", "IBM"])).json()
        for run_id in batch["run_ids"]:
            wait_status(c, run_id, {"completed"})
        page = ui.get(f"/ui/batches/{batch['id']}")
        assert page.status_code == 200 and 'id="players"' in page.text
        assert XSS not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        compare = c.get(f"/v1/batches/{batch['id']}/compare").json()
        for row in compare["rows"]:
            assert f'href="/ui/runs/{row["run_id"]}"' in page.text
        stat = compare["players"][0]["stats"]["return_pct"]
        assert f"{stat['mean']:,.2f}" in page.text
        assert other.get(f"/ui/batches/{batch['id']}").status_code == 404
        schedule = c.post("/v1/schedules", json=daily_schedule(models(c, "sched")[0])).json()
        shown = ui.get(f"/ui/schedules/{schedule['id']}")
        assert shown.status_code == 200 and "30 16 * * 1-5" in shown.text
        first = dt.datetime.fromisoformat(schedule["next_fires"][0])
        assert first.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M ET") in shown.text
        assert other.get(f"/ui/schedules/{schedule['id']}").status_code == 404


def test_the_vendored_chart_library_is_served_with_its_licence(ui_backend: Backend) -> None:
    with running_api(ui_backend, reconcile=False) as api, httpx.Client(base_url=api.url) as c:
        lib = c.get("/ui/static/vendor/lightweight-charts/"
                    "lightweight-charts.standalone.production.js")
        assert lib.status_code == 200 and "Lightweight Charts" in lib.text[:400]
        assert "v5.3.0" in lib.text[:400]
        notice = c.get("/ui/static/vendor/lightweight-charts/NOTICE")
        assert notice.status_code == 200 and "Apache License" in notice.text
        assert c.get("/ui/static/vendor/lightweight-charts/LICENSE").status_code == 200


def test_the_chart_marks_each_resting_orders_life(ui_backend: Backend) -> None:
    ids = write_ledger(ui_backend)
    with running_api(ui_backend, reconcile=False) as api, browser_like(api) as ui:
        chart = ui.get(f"/ui/runs/{ids['run']}/chart.json").json()
        lives = {o["id"]: o for o in chart["symbols"]["MSFT"]["orders"]}
        # Market orders never rest; a refused one never rested.
        assert set(lives) == {ids["limit"], ids["expiring"], ids["stop"], ids["gtc"]}
        assert {lives[ids[k]]["state"] for k in ("limit", "expiring", "stop", "gtc")} == {
            "filled", "expired", "cancelled", "open"}
        limit = lives[ids["limit"]]
        assert (limit["price"], limit["type"], limit["side"]) == (98.5, "limit", "buy")
        day0, day1 = (int(d.timestamp()) for d in (DAY0, DAY1))
        assert (limit["from"], limit["to"]) == (day0, day1)  # decided on day 0, filled day 1
        assert lives[ids["stop"]]["to"] == day0  # cancelled the day it was placed
        assert lives[ids["stop"]]["price"] == 80.0  # a stop's level is its stop price


def test_the_runs_page_filters_like_the_api(ui_backend: Backend) -> None:
    with running_api(ui_backend, reconcile=False) as api, api.client() as c, \
            browser_like(api) as ui:
        first, second = create_model(c, "first"), create_model(c, "second")
        kept = create(c, intraday(first))
        stopped = create(c, intraday(second))
        c.post(f"/v1/runs/{stopped['id']}/stop").raise_for_status()

        def shown(query: str) -> set[int]:
            r = ui.get(f"/ui?{query}")
            assert r.status_code == 200, r.text
            return {int(i) for i in re.findall(r'<tr data-run="(\d+)"', r.text)}
        both = {kept["id"], stopped["id"]}
        assert shown("") == both
        assert shown("status=&model_id=&batch_id=&schedule_id=") == both  # the blank form
        assert shown("status=stopped") == {stopped["id"]}
        assert shown(f"model_id={first}") == {kept["id"]}
        assert shown("batch_id=7") == set() and "match these filters" in ui.get(
            "/ui?batch_id=7").text
        rows = ui.get("/ui/runs.json", params={"status": "queued"}).json()
        assert [r["id"] for r in rows] == [kept["id"]]
