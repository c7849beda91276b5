# `helm test`: create a model and a run through the API Service, follow it, stop it.
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

import httpx
import jwt

service = os.environ["TEST_API_SERVICE_ENV"]
url = os.environ["TEST_API_URL"]
if os.environ.get(f"{service}_HOST"):  # no cluster DNS needed: the Service's variables
    url = f"http://{os.environ[service + '_HOST']}:{os.environ[service + '_PORT']}"
deadline = time.monotonic() + float(os.environ.get("TEST_TIMEOUT_SECONDS", "120"))
now = int(time.time())
claims: dict[str, Any] = {"sub": os.environ["TEST_USER_ID"], "aud": os.environ["TEST_JWT_AUDIENCE"],
          "iat": now, "exp": now + 600, "role": "authenticated"}
if os.environ.get("TEST_JWT_ISSUER"):
    claims["iss"] = os.environ["TEST_JWT_ISSUER"]
token = jwt.encode(claims, os.environ["TEST_JWT_SECRET"], algorithm="HS256")


def say(message: str) -> None:
    print(f"helm test: {message}", flush=True)


def fail(message: str) -> NoReturn:
    say(f"FAILED: {message}")
    sys.exit(1)


def wait(run_id: int, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    while time.monotonic() < deadline:
        run: dict[str, Any] = api.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if done(run):
            return run
        if run["status"] in ("failed", "completed"):
            fail(f"run {run_id} is {run['status']} while waiting for {what}: "
                 f"{run['status_reason']}")
        time.sleep(0.5)
    fail(f"timed out waiting for {what}")


with httpx.Client(base_url=url, timeout=10,
                  headers={"Authorization": f"Bearer {token}"}) as api:
    say(f"API at {url}")
    api.get("/readyz").raise_for_status()
    model = api.post("/v1/models", json={"signature": f"helm-test-{uuid.uuid4().hex[:8]}",
                                         "parameters": {"note": "helm test"}})
    if model.status_code != 201:
        fail(f"create model: {model.status_code} {model.text}")
    # A long daily backtest, so that it is still running when it is stopped; on seeded
    # synthetic bars, so the test needs no market data provider.
    created = api.post("/v1/runs", json={
        "model_id": model.json()["id"], "mode": "daily", "symbols": ["SPY"],
        "start": "2000-01-03", "end": "2024-12-31", "decider": "sma_crossover",
        "data": "synthetic"})
    if created.status_code != 201:
        fail(f"create run: {created.status_code} {created.text}")
    run_id = created.json()["id"]
    say(f"run {run_id} created ({created.json()['status']})")
    run = wait(run_id, lambda r: r["status"] == "running" and r["progress"]["step"] > 0,
               "the run to make progress")
    say(f"run {run_id} running, step {run['progress']['step']}/{run['progress']['total']}")
    stop = api.post(f"/v1/runs/{run_id}/stop")
    if stop.status_code != 202:
        fail(f"stop: {stop.status_code} {stop.text}")
    run = wait(run_id, lambda r: r["status"] in ("stopping", "stopped"), "the stop")
    say(f"run {run_id} {run['status']}")
    run = wait(run_id, lambda r: r["status"] == "stopped", "the saved partial results")
    say(f"run {run_id} stopped after {run['progress']['step']} steps: ok")
