"""A live run as a Kubernetes Job on the test cluster: its runner pod streams bars from a
local server speaking Alpaca's market-data protocol and trades on a local Alpaca paper
account with its user's keys from that user's Secret; its pod is deleted mid-session
and the Job's next pod reconciles with the broker and completes the run at the close
of the (scaled) clock.

The fakes listen on the host's bridge address, where pods reach the host; the clock
(TICKRUN_RUNNER_LIVE_CLOCK, in the runner's environment) runs 60 times as fast.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from pydantic import SecretStr

from core import calendar
from core.marketdata.settings import MarketDataSettings
from runner.live.clock import LiveClock
from tests.apiserver import ApiServer, wait_for, wait_status
from tests.cluster.helpers import Cluster
from tests.cluster.stack import RUNNER_ENV, Stack
from tests.cluster.test_runs_on_kubernetes import running_pod
from tests.fakes.alpaca_stream import FakeAlpacaStream
from tests.fakes.alpaca_trading import FakeAlpacaTrading
from tests.integration.test_api_runs import create, create_model
from tests.integration.test_live_paper import SLIP, Market
from tests.integration.test_live_runs import SYMBOLS, Driver, before, close_of
from tests.servers import Postgres, Redis

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

DATA_KEY, DATA_SECRET = "PKK8SDATA0123456789A", "k8s-data-secret-0123456789"
PAPER_KEY, PAPER_SECRET = "PKK8SPAPER0123456789", "k8s-paper-secret-0123456789"
SPEED = 60.0
# The session live now (the API checks a live run's date against the wall clock); the
# runner's clock starts 30 minutes before its close.
SESSION = calendar.session_minutes(calendar.live_session(dt.datetime.now(dt.UTC)))
JOIN = len(SESSION) - 30


@pytest.fixture(scope="module")
def fakes(cluster: Cluster) -> Iterator[tuple[FakeAlpacaStream, FakeAlpacaTrading]]:
    prices = {s: close_of(s, JOIN) for s in SYMBOLS}
    with FakeAlpacaStream(DATA_KEY, DATA_SECRET, host=cluster.host_address) as data, \
            FakeAlpacaTrading(PAPER_KEY, PAPER_SECRET, prices=prices,
                              host=cluster.host_address) as account:
        yield data, account


@pytest.fixture(scope="module")
def clock() -> LiveClock:
    # The join minute 45 s from now: the stack, the API, the Job and its pod start first.
    return LiveClock(SESSION[JOIN], time.time() + 45, SPEED)


@pytest.fixture(scope="module")
def overrides(stack_base: Stack, fakes: tuple[FakeAlpacaStream, FakeAlpacaTrading],
              clock: LiveClock) -> dict[str, str]:
    data, _ = fakes
    env = {**RUNNER_ENV, "TICKRUN_REDIS_KEY_PREFIX": stack_base.prefix,
           "TICKRUN_RUNNER_LIVE_CLOCK": str(clock),
           "TICKRUN_ALPACA_STREAM_URL": data.url("iex")}
    return {"TICKRUN_K8S_RUNNER_ENV": json.dumps(env),
            "TICKRUN_K8S_ALPACA_API_KEY_ID_SECRET": json.dumps(
                {"name": "tickrun-alpaca-data", "key": "id"}),
            "TICKRUN_K8S_ALPACA_API_SECRET_KEY_SECRET": json.dumps(
                {"name": "tickrun-alpaca-data", "key": "secret"})}


@pytest.fixture(scope="module")
def stack_base(cluster: Cluster, namespace: str, postgres_server: Postgres,
               redis_server: Redis, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Stack]:
    s = Stack(cluster, namespace, postgres_server, redis_server,
              Path(tmp_path_factory.mktemp("k8s-live-logs")))
    yield s
    s.close(postgres_server)


@pytest.fixture(scope="module")
def stack(stack_base: Stack, overrides: dict[str, str],
          fakes: tuple[FakeAlpacaStream, FakeAlpacaTrading]) -> Stack:
    """The module's stack: the operator's data keys and user-a's paper keys as Secrets,
    a controller whose runner pods get the live clock and the stream's address."""
    _, account = fakes
    core = stack_base.cluster.core
    core.create_namespaced_secret(stack_base.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="tickrun-alpaca-data"),
        string_data={"id": DATA_KEY, "secret": DATA_SECRET}))
    core.create_namespaced_secret(stack_base.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="tickrun-broker-user-a"),
        string_data={"TICKRUN_BROKER_ALPACA_KEY_ID": PAPER_KEY,
                     "TICKRUN_BROKER_ALPACA_SECRET_KEY": PAPER_SECRET,
                     "TICKRUN_BROKER_ALPACA_URL": account.url,
                     "TICKRUN_BROKER_ALPACA_STREAM_URL": account.stream_url,
                     "TICKRUN_BROKER_FILL_WAIT_SECONDS": "2"}))
    stack_base.start_controller("c1", **overrides)
    return stack_base


@pytest.fixture(scope="module")
def api(stack: Stack, overrides: dict[str, str]) -> Iterator[ApiServer]:
    market = MarketDataSettings(alpaca_api_key_id=SecretStr(DATA_KEY),
                                alpaca_api_secret_key=SecretStr(DATA_SECRET))
    server = ApiServer(stack.backend, executor=stack.executor(**overrides), reconcile=False,
                       market_data=market).start()
    yield server
    server.stop()


def test_a_live_paper_run_survives_its_pod_deleted_and_completes_at_the_close(
        stack: Stack, api: ApiServer, fakes: tuple[FakeAlpacaStream, FakeAlpacaTrading],
        clock: LiveClock) -> None:
    data, account = fakes
    with api.client() as c, Market(account), \
            Driver(data.send_minute, clock, gaps=before(JOIN), session=SESSION):
        model = create_model(c, "k8s-live")
        run = create(c, {"model_id": model, "mode": "intraday", "symbols": list(SYMBOLS),
                         "decider": "buy_and_hold", "live": {"broker": "alpaca_paper"}})
        rid = run["id"]
        # Its first pod trades (buy-and-hold buys at the first minute it can decide).
        wait_for(lambda: account.order_count() >= 2, 150)
        at = _progress(c, rid)
        stack.cluster.core.delete_namespaced_pod(running_pod(stack, rid), stack.namespace)
        done = wait_status(c, rid, {"completed", "failed", "stopped"}, timeout=200)
        trades = c.get(f"/v1/runs/{rid}/trades").json()
        decisions = c.get(f"/v1/runs/{rid}/decisions", params={"limit": 5000}).json()
        labels = stack.kubectl("get", "jobs", "-L", "tickrun.io/live", "--no-headers")
        spec = json.dumps(stack.cluster.batch.read_namespaced_job(
            f"tickrun-run-{rid}", stack.namespace).to_dict(), default=str)
    assert done["status"] == "completed", done
    assert done["attempts"] >= 2 and at < len(SESSION)
    assert [d["step"] for d in decisions] == list(range(len(SESSION)))
    assert any(d["outcome"] == "missed" for d in decisions[at:]), "no minute was missed"
    # Each order went to the broker once, and its fill is in the ledger once.
    filled = [t for t in trades if t["status"] == "filled"]
    assert len(filled) == account.order_count() == 2
    for t in filled:
        assert account.order_count(f"tr-{rid}-{t['step']}-{t['seq']}") == 1
        assert float(t["price"]) == float(close_of(t["symbol"], t["step"]) + SLIP)
    assert done["result"]["live"]["broker"] == "alpaca_paper"
    assert f"tickrun-run-{rid}" in labels and "alpaca_paper" in labels
    # The Job names the user's Secret and holds no key.
    assert "tickrun-broker-user-a" in spec
    assert PAPER_SECRET not in spec and DATA_SECRET not in spec


def _progress(c: httpx.Client, rid: int) -> Any:
    return int(c.get(f"/v1/runs/{rid}").json()["progress"]["step"])
