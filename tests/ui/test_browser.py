"""The console in a real browser (headless Debian Chromium): what a person sees while
a run plays, stops or ends, checked against the JSON API's own answers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from core.eventlog import EventType
from core.records import Decision
from tests.apiserver import Backend, running_api, wait_for, wait_status
from tests.integration.test_api_batches import daily_batch, models
from tests.integration.test_api_orders import write_ledger
from tests.integration.test_api_runs import SLOW, create, create_model, intraday
from tests.integration.test_api_schedules import daily_schedule
from tests.ui.conftest import screenshot, sign_in, text, wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
XSS = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


def filled(c: httpx.Client, run_id: int) -> list[dict[str, Any]]:
    trades = c.get(f"/v1/runs/{run_id}/trades").raise_for_status().json()
    return [t for t in trades if t["status"] == "filled"]


def timeline_steps(browser: WebDriver) -> list[int]:
    items = browser.find_elements(By.CSS_SELECTOR, "#timeline > li")
    return [int(li.get_attribute("data-step") or -1) for li in items]


def test_a_run_page_follows_the_run_to_its_end(backend: Backend, browser: WebDriver) -> None:
    """On both deployments: PostgreSQL with Redis Streams (the cluster's event ids) and
    SQLite (the embedded default)."""
    with running_api(backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        sign_in(browser, api.url)
        browser.get(f"{api.url}/ui/runs/{run['id']}")
        wait_until(lambda: text(browser, "#status") == "running")
        wait_until(lambda: len(timeline_steps(browser)) >= 30)
        # Orders arrive while it plays (the page was loaded before any was placed).
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#orders tr[data-order]"))
        assert text(browser, "#status") == "running"
        screenshot(browser, "run-live")
        wait_until(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute(
            "data-done") == "true", timeout=120)

        decisions = c.get(f"/v1/runs/{run['id']}/decisions").json()
        assert timeline_steps(browser) == [d["step"] for d in reversed(decisions)]
        chart = browser.find_element(By.CSS_SELECTOR, ".chart[data-symbol='AAPL']")
        wait_until(lambda: chart.get_attribute("data-fills") == str(len(filled(c, run["id"]))))
        assert len(filled(c, run["id"])) > 0
        assert chart.find_elements(By.TAG_NAME, "canvas")
        result = c.get(f"/v1/runs/{run['id']}/result").json()
        assert text(browser, "#status") == result["status"] == "completed"
        shown = json.loads(browser.find_element(By.ID, "result-json").get_attribute(
            "textContent") or "null")
        assert shown == result["result"]
        assert text(browser, "#result-trades") == str(result["result"]["trades"])
        orders = c.get(f"/v1/runs/{run['id']}/orders").json()
        shown_orders = browser.find_elements(By.CSS_SELECTOR, "#orders tr[data-order]")
        assert [int(e.get_attribute("data-order") or 0) for e in shown_orders] == [
            o["id"] for o in orders]
        browser.execute_script("window.scrollTo(0, 0)")
        screenshot(browser, "run-completed")
        browser.set_window_size(390, 1600)  # a phone's width
        try:
            screenshot(browser, "run-phone")
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, "the page scrolls sideways on a phone"
        finally:
            browser.set_window_size(1280, 1600)


def test_the_runs_list_shows_a_new_run_and_follows_its_status(
        ui_backend: Backend, browser: WebDriver) -> None:
    with running_api(ui_backend, runner_env=SLOW) as api, api.client() as c:
        model_id = create_model(c)
        sign_in(browser, api.url)
        run = create(c, intraday(model_id))  # 390 steps: about 12 s
        row = f"#runs tr[data-run='{run['id']}']"
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, row))
        seen: set[str] = set()
        steps: set[str] = set()

        def finished() -> bool:
            seen.add(text(browser, f"{row} [data-field='status']"))
            steps.add(text(browser, f"{row} [data-field='steps']"))
            return "completed" in seen
        wait_until(finished, timeout=120)
        assert "running" in seen, seen
        assert len(steps - {"0/390", "390/390"}) >= 2, steps  # progress moved while running
        assert text(browser, f"{row} [data-field='steps']") == "390/390"
        assert not browser.find_elements(By.CSS_SELECTOR, f"{row} [data-field='stop']")
        screenshot(browser, "runs")


def test_stop_from_the_run_page(ui_backend: Backend, browser: WebDriver) -> None:
    with running_api(ui_backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        sign_in(browser, api.url)
        browser.get(f"{api.url}/ui/runs/{run['id']}")
        wait_until(lambda: len(timeline_steps(browser)) >= 5)
        browser.find_element(By.ID, "stop").send_keys(Keys.ENTER)  # with the keyboard
        wait_until(lambda: text(browser, "#status") == "stopped", timeout=60)
        stopped = c.get(f"/v1/runs/{run['id']}").json()
        assert stopped["status"] == "stopped" and stopped["progress"]["step"] < 390
        wait_until(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute(
            "data-done") == "true")
        assert not browser.find_element(By.ID, "stop-form").is_displayed()


def test_stop_all_from_the_runs_page_asks_first(ui_backend: Backend,
                                                browser: WebDriver) -> None:
    with running_api(ui_backend, runner_env=SLOW) as api, api.client() as c:
        model_id = create_model(c)
        runs = [create(c, intraday(model_id)) for _ in range(3)]  # two play, one waits
        sign_in(browser, api.url)
        browser.find_element(By.ID, "stop-all").click()
        assert browser.find_element(By.TAG_NAME, "h1").text == "Stop all runs?"
        screenshot(browser, "stop-all")
        browser.find_element(By.ID, "confirm-stop-all").send_keys(Keys.SPACE)
        wait_until(lambda: "Asked 3 runs to stop" in text(browser, "main"))
        for run in runs:
            wait_status(c, run["id"], {"stopped"}, timeout=60)
        wait_until(lambda: all(
            e.text == "stopped"
            for e in browser.find_elements(By.CSS_SELECTOR, "[data-field='status']")))


def test_reasoning_is_shown_as_text_live_and_on_load(ui_backend: Backend,
                                                     browser: WebDriver) -> None:
    """An agent's words with markup in them, arriving live (the stream's decision
    event), opened (its tool calls read from the API) and rendered by the server."""
    with running_api(ui_backend, reconcile=False) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        sign_in(browser, api.url)
        browser.get(f"{api.url}/ui/runs/{run['id']}")
        bar = dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC)
        calls = [{"name": XSS, "args": {"q": XSS}, "result": XSS}]
        api.services.store.record_decision(Decision(
            run_id=run["id"], step=0, bar_time=bar, action="hold", orders=[], reasoning=XSS,
            outcome="hold", latency_ms=1.0, tool_calls=calls))
        events = ui_backend.event_log()
        events.append(run["id"], EventType.DECISION, {
            "step": 0, "bar_time": bar.isoformat(), "action": XSS, "orders": [],
            "cancels": [], "close_all": False, "reasoning": XSS, "outcome": "hold",
            "latency_ms": 1.0, "error": XSS, "tokens_in": 0, "tokens_out": 0,
            "tokens_cached": 0, "cost": None, "tool_calls": [XSS]})
        events.close()
        wait_until(lambda: timeline_steps(browser) == [0])
        item = browser.find_element(By.CSS_SELECTOR, "#timeline > li")
        assert item.find_element(By.CSS_SELECTOR, ".reasoning").text == XSS
        assert item.find_element(By.CSS_SELECTOR, "[data-field='action']").text == XSS
        item.find_element(By.CSS_SELECTOR, "details.tools summary").click()
        tools = item.find_element(By.CSS_SELECTOR, "[data-field='tool_json']")
        wait_until(lambda: tools.text.startswith("["))
        assert json.loads(tools.text) == calls
        assert not browser.find_elements(By.CSS_SELECTOR, "#timeline img, #timeline script")
        assert browser.title != "pwned"
        browser.refresh()  # now rendered by the server
        wait_until(lambda: timeline_steps(browser) == [0])
        item = browser.find_element(By.CSS_SELECTOR, "#timeline > li")
        assert item.find_element(By.CSS_SELECTOR, ".reasoning").text == XSS
        item.find_element(By.CSS_SELECTOR, "details.tools summary").click()
        assert json.loads(item.find_element(By.CSS_SELECTOR, "[data-field='tool_json']").text
                          ) == calls
        assert not browser.find_elements(By.CSS_SELECTOR, "#timeline img, #timeline script")
        assert browser.title != "pwned"
        screenshot(browser, "run-xss")
        browser.get("about:blank")  # the run never ends: leave before the server does


def test_another_users_run_is_a_404_page(ui_backend: Backend, browser: WebDriver) -> None:
    with running_api(ui_backend, reconcile=False) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        sign_in(browser, api.url, "user-b")
        assert not browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]")
        browser.get(f"{api.url}/ui/runs/{run['id']}")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
        assert "AAPL" not in text(browser, "main")
        browser.get_log("browser")  # the 404 itself is logged as a failed load


def test_the_page_resumes_after_the_api_restarts(ui_backend: Backend,
                                                 browser: WebDriver) -> None:
    """The embedded default's API (and its runners) killed mid-run and started again on
    the same port: the page's stream resumes with Last-Event-ID and ends with the
    timeline a fresh load shows."""
    with running_api(ui_backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        port = api.port
        sign_in(browser, api.url)
        browser.get(f"{api.url}/ui/runs/{run['id']}")
        wait_until(lambda: len(timeline_steps(browser)) >= 40)
    wait_until(lambda: text(browser, "#stream") != "live", timeout=30)
    with running_api(ui_backend, runner_env=SLOW, port=port) as api, api.client() as c:
        wait_status(c, run["id"], {"completed"}, timeout=120)
        wait_until(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute(
            "data-done") == "true", timeout=60)
        live_steps = timeline_steps(browser)
        browser.get_log("browser")  # the dropped connection is logged: expected here
        browser.refresh()
        wait_until(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute(
            "data-done") == "true")
        assert timeline_steps(browser) == live_steps == list(range(389, -1, -1))
        wait_for(lambda: True)


def test_batch_and_schedule_pages(ui_backend: Backend, browser: WebDriver) -> None:
    with running_api(ui_backend, per_user=4) as api, api.client() as c:
        body = daily_batch(models(c, "alpha"), symbols=["MSFT", "IBM"], name="two symbols",
                           baselines=True)
        batch = c.post("/v1/batches", json=body).raise_for_status().json()
        for run_id in batch["run_ids"]:
            wait_status(c, run_id, {"completed"}, timeout=120)
        schedule = c.post("/v1/schedules", json=daily_schedule(models(c, "nightly")[0]))
        sign_in(browser, api.url)
        browser.get(f"{api.url}/ui/batches/{batch['id']}")
        players = browser.find_elements(By.CSS_SELECTOR, "#players tbody tr")
        compare = c.get(f"/v1/batches/{batch['id']}/compare").json()
        assert len(players) == len(compare["players"]) > 1
        assert browser.find_elements(By.CSS_SELECTOR, "#players .ci")  # the intervals
        curves = browser.find_element(By.ID, "curves-chart")
        wait_until(lambda: curves.get_attribute("data-curves") == str(len(compare["rows"])))
        screenshot(browser, "batch")
        browser.get(f"{api.url}/ui/schedules/{schedule.json()['id']}")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#next-fires li")) == 3
        screenshot(browser, "schedule")


def test_resting_orders_are_drawn(ui_backend: Backend, browser: WebDriver) -> None:
    ids = write_ledger(ui_backend)
    with running_api(ui_backend, reconcile=False) as api:
        sign_in(browser, api.url)
        browser.get(f"{api.url}/ui/runs/{ids['run']}")
        chart = browser.find_element(By.CSS_SELECTOR, ".chart[data-symbol='MSFT']")
        wait_until(lambda: chart.get_attribute("data-orders") == "4")
        assert chart.get_attribute("data-fills") == "2"  # the market buy and the limit
        assert len(browser.find_elements(By.CSS_SELECTOR, "#orders tbody tr")) == 6
        browser.get("about:blank")  # the run never ends: leave before the server does


def test_a_live_runs_clock_and_lag_follow_its_progress(ui_backend: Backend,
                                                      browser: WebDriver) -> None:
    with running_api(ui_backend, reconcile=False) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        sign_in(browser, api.url)
        browser.get(f"{api.url}/ui/runs/{run['id']}")
        assert not browser.find_element(By.ID, "clock-box").is_displayed()
        events = ui_backend.event_log()
        events.append(run["id"], EventType.PROGRESS, {
            "step": 3, "total": 390, "equity": "100000", "cash": "100000",
            "bar_time": "2025-03-03T14:32:00+00:00", "last_action": "hold",
            "wall_time": "2025-03-03T14:33:01.500000+00:00", "lag_seconds": 1.5})
        events.close()
        wait_until(lambda: browser.find_element(By.ID, "clock-box").is_displayed())
        assert text(browser, "#clock") == "2025-03-03 09:33:01 ET"  # New York time
        assert text(browser, "#lag") == "1.5 s"
        assert text(browser, "#steps") == "3/390"
        browser.get("about:blank")  # the run never ends: leave before the server does
