"""The console's fixtures: a real API on SQLite (the embedded default), and a headless
Debian Chromium driven through its chromedriver (scripts/install-deps.sh installs both).

Screenshots go to build/ui-screenshots/ (UI_SCREENSHOTS overrides) for review."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.apiserver import Backend, token

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(os.environ.get("UI_SCREENSHOTS", Path(__file__).parents[2] / "build" /
                            "ui-screenshots"))


@pytest.fixture
def ui_backend(sqlite_url: str, tmp_path: Path) -> Backend:
    """SQLite and its event log: the embedded default `tickrun dev` serves."""
    return Backend(sqlite_url, None, "ui", tmp_path / "runner-logs")


@pytest.fixture(scope="session")
def chromium() -> Iterator[WebDriver]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "Debian's chromium and chromium-driver are needed: run scripts/install-deps.sh")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--disable-gpu", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium: WebDriver) -> Iterator[WebDriver]:
    """The session's browser, clean for each test; a test ends with no console errors."""
    chromium.delete_all_cookies()
    chromium.get("about:blank")
    chromium.get_log("browser")  # drop what an earlier test left
    yield chromium
    errors = console_errors(chromium)
    chromium.get("about:blank")
    assert errors == [], errors


def console_errors(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def sign_in(driver: WebDriver, base_url: str, user_id: str = "user-a") -> None:
    """Through the sign-in form, as a person pastes a Supabase access token."""
    driver.get(f"{base_url}/ui/login")
    driver.find_element(By.ID, "token").send_keys(token(user_id))
    driver.find_element(By.CSS_SELECTOR, "form[action='/ui/login'] button").click()
    wait_until(lambda: driver.current_url.rstrip("/").endswith("/ui"))


def screenshot(driver: WebDriver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    """The page's own state, polled: a stale element (the script replaced it) or a
    missing one (the next page of a form's redirect still loading) is a miss, not an
    error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (StaleElementReferenceException, NoSuchElementException):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "the page did not get there in time"
        time.sleep(0.1)


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)
