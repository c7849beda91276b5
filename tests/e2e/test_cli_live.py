"""A live run as a person starts one: `tickrun runs create --live --follow` against
`tickrun dev`, whose runner streams the bars of the session live now from a local
server speaking Alpaca's market-data protocol, on a clock 1,500 times as fast (shared
with the test's bar driver through TICKRUN_RUNNER_LIVE_CLOCK)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core import calendar
from runner.live.clock import LiveClock
from tests.e2e.test_cli import TICKRUN, running_dev_server, tickrun
from tests.fakes.alpaca_stream import FakeAlpacaStream
from tests.integration.test_live_runs import Driver

pytestmark = pytest.mark.timeout(300)

KEY, SECRET = "PKCLILIVE0123456789A", "cli-live-secret-0123456789abc"


def test_a_live_run_from_the_cli_plays_the_session_live_now_and_shows_its_clock(
        tmp_path: Path) -> None:
    day = calendar.live_session(dt.datetime.now(dt.UTC))
    session = calendar.session_minutes(day)
    with FakeAlpacaStream(KEY, SECRET, feeds=("iex",)) as fake:
        # The session opens 20 s from now by the clock: the dev server and its runner
        # start meanwhile. At 300x a bar has 150 ms of wall time between its send (40 s
        # of the clock before its minute ends) and its grace's end; at 1500x the 30 ms
        # were overrun 13 times on a fresh machine building the test cluster meanwhile.
        clock = LiveClock(session[0], time.time() + 20, 300)
        env_extra = {"TICKRUN_ALPACA_API_KEY_ID": KEY, "TICKRUN_ALPACA_API_SECRET_KEY": SECRET,
                     "TICKRUN_ALPACA_STREAM_URL": fake.url("iex"),
                     "TICKRUN_RUNNER_LIVE_CLOCK": str(clock)}
        with running_dev_server(tmp_path, **env_extra) as env, \
                Driver(fake.send_minute, clock, session=session):
            model = tickrun("models", "create", "live", "--json", cwd=tmp_path, env=env)["id"]
            refused = subprocess.run(
                [*TICKRUN, "runs", "create", "--model", str(model), "--symbol", "AAPL",
                 "--live", "--data", "synthetic"], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=60)
            done = subprocess.run(
                [*TICKRUN, "runs", "create", "--model", str(model), "--symbol", "AAPL",
                 "--symbol", "MSFT", "--live", "--decider", "sma_crossover", "--follow"],
                cwd=tmp_path, env={**env, "COLUMNS": "200"}, capture_output=True, text=True,
                timeout=240)
            runs = tickrun("runs", "ls", "--json", cwd=tmp_path, env=env)["items"]
    assert refused.returncode != 0
    assert "a live run's bars come from a provider's stream" in refused.stderr
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    # The follower showed the bar it decided and the lag (the last one: the close).
    last_bar = session[-1].astimezone(ZoneInfo(calendar.NEW_YORK))
    assert f"bar {last_bar:%H:%M} ET, lag " in done.stderr, done.stderr[-2000:]
    run = runs[0]
    assert run["status"] == "completed", json.dumps(run)[:2000]
    assert run["spec"]["date"] == day.isoformat() and run["spec"]["data"] == "alpaca"
    assert run["spec"]["fill"] == "close" and run["spec"]["live"]["broker"] == "sim"
    assert run["progress"]["step"] == run["progress"]["total"] == len(session)
    # Every bar reached the run but for a few on a loaded machine (each late bar is a
    # gap, said and counted, as it would be live): a broken feed would gap every minute.
    assert run["result"]["live"]["gaps"] <= len(session) // 20, run["result"]["live"]
    # And none was lost: the runner's log has each gap's bar coming late (but the last
    # minute's, which comes after the run ended).
    said = [json.loads(line)["message"] for line in
            (tmp_path / ".tickrun" / "logs" / f"run-{run['id']}.log").read_text().splitlines()
            if line.startswith("{")]
    gapped = {(symbol, minute) for message in said
              if (gap := re.match(r"gap: no bar of (.+) for (\S+) \(", message))
              for symbol, minute in [(s, gap[2]) for s in gap[1].split(", ")]}
    late = {(bar[1], bar[2]) for message in said
            if (bar := re.match(r"late bar of (\S+) for (\S+): ", message))}
    last = {(symbol, session[-1].isoformat()) for symbol in ("AAPL", "MSFT")}
    assert len(gapped) == run["result"]["live"]["gaps"] and gapped - last <= late, (
        sorted(gapped - late), run["result"]["live"])
