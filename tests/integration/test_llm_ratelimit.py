"""The shared LLM rate limit for real: the Lua scripts compute what the Python does; two
processes take slots from one schedule; twenty runs on one key against a provider that
allows 5 requests/s decide every step without 429s, sharing through Redis or within the
process; a 429 pauses every run on the key; a slot past the deadline is a HOLD; Redis
down falls back to the process. Runs are played by the runner's own entry (play_run),
each with its own limiter and Redis connection, as runner pods are."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from core.eventlog import EventLog
from core.eventlog.redis_log import RedisEventLog
from core.exitcodes import EXIT_OK
from core.records import Run
from core.status import RunStatus
from core.store import Store, open_store
from runner import llm_ratelimit
from runner.app import RunnerDeps, play_run
from runner.llm_ratelimit import (
    KeyState,
    LocalRateLimiter,
    Policy,
    RateLimiter,
    RedisRateLimiter,
    Reservation,
    key_id,
)
from runner.llm_settings import LlmSettings
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal
from tests.factories import daily_spec, make_model, make_run
from tests.fakes.openai_server import (
    ChatRequest,
    FakeOpenAI,
    FakeRateLimit,
    Reply,
    estimated_tokens,
    fake_openai,
)
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.redis]

RUNS = 20
LIMIT_PER_SECOND = 5.0
# The fake provider's bucket in the tests of many runs on a key: two seconds' worth of
# its limit (a real one refills a minute's worth). The limiter's schedule leaves a
# bucket of one second's worth half its burst for jitter, less the probe it does not
# charge: 0.2-0.5 s between a slot and its request's arrival, which a loaded machine
# overruns (a process starved for a moment sends late, then with the next slots, into
# a bucket that was full meanwhile). The pacing itself is asserted on the arrivals.
PROVIDER_BURST_SECONDS = 2.0


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    """PostgreSQL, as deployed with Redis (twenty runs write at once)."""
    store = open_store(postgres_url, pool_size=RUNS + 5)
    yield store
    store.close()


@pytest.fixture
def redis_events(redis_url: str, redis_prefix: str) -> Iterator[EventLog]:
    log = RedisEventLog(redis_url, prefix=redis_prefix)
    yield log
    log.close()


def llm_settings(fake: FakeOpenAI, api_key: str, **kw: Any) -> LlmSettings:
    kw.setdefault("retry_initial_seconds", 0.01)
    kw.setdefault("retry_max_seconds", 0.05)
    return LlmSettings(provider="openai", base_url=fake.base_url, api_key=SecretStr(api_key),
                       **kw)


def redis_limiter(url: str, settings: LlmSettings, prefix: str, **kw: Any) -> RedisRateLimiter:
    return RedisRateLimiter(url, Policy.from_settings(settings), key_id=key_id(settings),
                            prefix=prefix, **kw)


def llm_runs(store: Store, n: int, days: int, llm: str = "openai/agent") -> list[Run]:
    """`n` runs of `days` steps (January 2024 from the 2nd: no weekend before the 6th)."""
    model = make_model(store, "user-a", f"agent-{secrets.token_hex(4)}", llm=llm)
    spec = daily_spec(dt.date(2024, 1, 2), dt.date(2024, 1, 1 + days), decider="llm")
    return [make_run(store, spec, model=model) for _ in range(n)]


def play_together(runs: list[Run], deps_for: Callable[[Run], RunnerDeps]) -> dict[int, int]:
    """Each run by play_run in its own thread, as many runner pods at once."""
    codes: dict[int, int] = {}
    deps = {run.id: deps_for(run) for run in runs}
    threads = [threading.Thread(target=lambda r=run: codes.__setitem__(
        r.id, play_run(r.id, deps[r.id]))) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    for d in deps.values():
        if d.llm_limiter is not None:
            d.llm_limiter.close()
    return codes


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times))


def granted_slots(monkeypatch: pytest.MonkeyPatch, backend: str) -> list[float]:
    """The start of every slot the key's limiter grants from now on (time.monotonic):
    the process's limiter's exactly (its clock), Redis's to within a round trip."""
    slots: list[float] = []
    if backend == "process":
        pure = llm_ratelimit.schedule

        def scheduling(state: KeyState, now: float, *args: Any
                       ) -> tuple[KeyState, Reservation]:
            state, reservation = pure(state, now, *args)
            if reservation.granted:
                slots.append(now + reservation.wait)
            return state, reservation

        monkeypatch.setattr(llm_ratelimit, "schedule", scheduling)
        return slots
    reserve = RedisRateLimiter.reserve

    def reserving(self: RedisRateLimiter, tokens: float, max_wait: float) -> Reservation:
        asked = time.monotonic()
        reservation = reserve(self, tokens, max_wait)
        if reservation.granted:
            slots.append((asked + time.monotonic()) / 2 + reservation.wait)
        return reservation

    monkeypatch.setattr(RedisRateLimiter, "reserve", reserving)
    return slots


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the Lua mirrors the Python -----------------------------------------------------------
HEADERS_300 = {"x-ratelimit-limit-requests": "300", "x-ratelimit-remaining-requests": "290",
               "x-ratelimit-reset-requests": "2s", "x-ratelimit-limit-tokens": "60000",
               "x-ratelimit-remaining-tokens": "59000", "x-ratelimit-reset-tokens": "1s"}
# (seconds later, operation, arguments): probes, learning, spacing in both dimensions,
# refusals past max_wait, a 429, a bare answer, the learned limit expiring, unlimited.
SCRIPT: list[tuple[float, str, tuple[Any, ...]]] = [
    (0, "reserve", (100, 10)), (0.01, "reserve", (100, 10)), (0.2, "observe", (None, 200)),
    (0, "reserve", (50, 10)), (0, "observe", (HEADERS_300, 200)),
    *[(0.03 * i, "reserve", (2000 if i % 3 else 10, 5)) for i in range(12)],
    (0, "reserve", (10, 0.05)), (0, "paused_for", ()),
    (0.1, "observe", ({"retry-after-ms": "700"} | HEADERS_300, 429)), (0, "paused_for", ()),
    (0, "reserve", (10, 0.3)), (0.2, "reserve", (10, 5)), (0, "observe", ({}, 200)),
    (0.5, "reserve", (10, 5)), (0, "pause", (0.4,)), (0, "reserve", (10, 5)),
    (601, "reserve", (10, 5)), (0, "reserve", (10, 5)), (0.3, "observe", ({}, 200)),
    *[(0.01, "reserve", (5000, 1)) for _ in range(5)],
    (0, "observe", ({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                     "x-ratelimit-reset-requests": "250ms"}, 200)),
    (0, "paused_for", ()), (0, "reserve", (1, 5)), (0, "reserve", (1, 5)),
]


def replay(limiter: RateLimiter, clock: list[float]) -> list[Any]:
    out: list[Any] = []
    for later, op, args in SCRIPT:
        clock[0] += later
        result = getattr(limiter, op)(*args)
        out.append(None if result is None else result if op != "reserve"
                   else (round(result.wait, 4), result.granted))
    return out


@pytest.mark.parametrize("configured", [{}, {"requests_per_minute": 120},
                                        {"tokens_per_minute": 30_000, "burst_seconds": 1.0}])
def test_the_lua_scripts_compute_what_the_python_does(
        redis_url: str, redis_prefix: str, configured: dict[str, Any]) -> None:
    policy = Policy(**configured)
    clock = [1_700_000_000.0]  # an epoch time: the Lua keeps microseconds of it
    python = replay(LocalRateLimiter(policy, clock=lambda: clock[0]), clock)
    clock[0] = 1_700_000_000.0
    lua = RedisRateLimiter(redis_url, policy, key_id=secrets.token_hex(8), prefix=redis_prefix,
                           clock=lambda: clock[0])
    try:
        from_redis = replay(lua, clock)
    finally:
        lua.close()
    assert [round(x, 4) if isinstance(x, float) else x for x in from_redis] == [
        round(x, 4) if isinstance(x, float) else x for x in python]
    granted = [x for x in python if isinstance(x, tuple)]
    assert any(g for _, g in granted) and not all(g for _, g in granted)  # both paths ran
    assert len({w for w, _ in granted}) > 5


# -- sharing across processes -------------------------------------------------------------
CHILD = """
import json, sys, time
from runner.llm_ratelimit import Policy, RedisRateLimiter
url, key, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
limiter = RedisRateLimiter(url, Policy(requests_per_minute=600, burst_seconds=0),
                           key_id=key, prefix=prefix)
sys.stdin.readline()  # start together
slots = []
for _ in range(n):
    wait = limiter.reserve(0, 60).wait
    slots.append(time.time() + wait)  # when Redis answered (a first call also connects)
print(json.dumps(slots))
"""


def test_two_processes_take_their_slots_from_one_schedule(
        redis_url: str, redis_prefix: str) -> None:
    key, n = secrets.token_hex(8), 15
    children = [subprocess.Popen([sys.executable, "-c", CHILD, redis_url, key, redis_prefix,
                                  str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    time.sleep(1.0)  # both imported and connected (a slow start only spreads the slots)
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    slots = sorted(s for child in children for s in json.loads(child.communicate(timeout=30)[0]))
    assert len(slots) == 2 * n
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    # 10 requests/s on the key: every slot 0.1 s after the one before, whichever process
    # took it (two schedules of their own would put two requests in most slots).
    assert min(gaps) > 0.09, gaps
    assert slots[-1] - slots[0] == pytest.approx((2 * n - 1) * 0.1, abs=0.05)


# -- twenty runs under one provider limit ------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "process"])
def test_twenty_runs_share_a_limit_of_5_per_second_without_429s(
        pg_store: Store, redis_events: EventLog, redis_url: str, redis_prefix: str,
        api_key: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    days = 3
    slots = granted_slots(monkeypatch, backend)
    runs = llm_runs(pg_store, RUNS, days)
    waits_before = sample("tickrun_runner_llm_rate_limit_wait_seconds_count")
    with fake_openai(api_key, rate_limit=FakeRateLimit(
            LIMIT_PER_SECOND, burst_seconds=PROVIDER_BURST_SECONDS)) as fake:
        fake.default = Reply.text("No signal: hold.").after(0.02)
        settings = llm_settings(fake, api_key)

        def deps_for(run: Run) -> RunnerDeps:
            limiter = (redis_limiter(redis_url, settings, redis_prefix)
                       if backend == "redis" else None)  # None: this process's limiter
            return RunnerDeps(store=pg_store, event_log=redis_events, stop=StopSignal(),
                              settings=RunnerSettings(decision_timeout_seconds=20), llm=settings,
                              llm_limiter=limiter)

        began = time.monotonic()
        codes = play_together(runs, deps_for)
        took = time.monotonic() - began
    print(f"\n{backend}: {len(fake.requests)} requests in {took:.1f}s, "
          f"{fake.rate_limited} answered 429")

    assert codes == {run.id: EXIT_OK for run in runs}
    for run in runs:
        done = pg_store.get_run(run.id)
        assert done.status is RunStatus.COMPLETED and done.steps_done == days
        decisions = pg_store.list_decisions(run.id)
        assert [(d.outcome, d.error) for d in decisions] == [("hold", None)] * days, [
            d.reasoning for d in decisions]
    assert fake.rate_limited <= 2
    answered = [r.received_at for r in fake.requests if not r.rate_limited]
    assert len(answered) == RUNS * days
    # The rate the limiter granted: the limit over the whole play once the first probe
    # and the half-second burst (3 requests) are set aside, and no second with more than
    # the limit plus that burst. (Its slots, not the provider's arrivals: on a loaded
    # machine a request starved for a moment after its slot arrives with the next ones,
    # up to 11 in a second; the provider's bucket and its 429s above judge those.)
    assert len(slots) >= len(fake.requests)
    rate = (len(slots) - 4) / (max(slots) - min(slots))
    assert rate <= LIMIT_PER_SECOND * 1.02, rate
    assert most_in_a_second(slots) <= LIMIT_PER_SECOND * 1.5 + 1, sorted(slots)
    assert took >= (RUNS * days - 4) / LIMIT_PER_SECOND  # it was the limit that paced them
    waited = sample("tickrun_runner_llm_rate_limit_wait_seconds_count") - waits_before
    assert waited == len(fake.requests)


# Over one request's prompt (so the fake's one-second bucket holds one), under two.
TOKENS_PER_SECOND = 4000


def test_tokens_per_minute_learned_from_the_headers_paces_big_prompts(
        pg_store: Store, redis_events: EventLog, api_key: str) -> None:
    """A key limited by tokens, not requests: prompts of a few thousand tokens (the
    system prompt, a dozen tools' schemas, 30 bars) against 4,000 tokens/s go at one or
    two a second, though fifty requests a second are allowed."""
    runs = llm_runs(pg_store, 5, 3)
    limit = FakeRateLimit(requests_per_second=50, tokens_per_minute=TOKENS_PER_SECOND * 60)
    with fake_openai(api_key, rate_limit=limit) as fake:
        settings = llm_settings(fake, api_key)
        codes = play_together(runs, lambda run: RunnerDeps(
            store=pg_store, event_log=redis_events, stop=StopSignal(),
            settings=RunnerSettings(decision_timeout_seconds=20), llm=settings))
    assert set(codes.values()) == {EXIT_OK}
    for run in runs:
        assert [d.outcome for d in pg_store.list_decisions(run.id)] == ["hold"] * 3
    # At most two 429s: a request the loaded machine sends late (the suite runs a
    # Kubernetes cluster beside it) can reach the provider just before the next one.
    assert fake.rate_limited <= 2
    answered = sorted((r.received_at, estimated_tokens(r.body)) for r in fake.requests
                      if not r.rate_limited)
    assert min(tokens for _, tokens in answered) > 1000  # big enough that tokens limit
    # Tokens at the provider: the rate over the play plus the half-second burst, the
    # first request (the probe, on an idle key) aside.
    span = answered[-1][0] - answered[0][0]
    assert sum(tokens for _, tokens in answered[1:]) <= (
        TOKENS_PER_SECOND * span * 1.02 + TOKENS_PER_SECOND / 2)


@pytest.mark.slow
def test_runner_processes_share_the_limit_through_redis(
        pg_store: Store, postgres_url: str, redis_url: str, redis_prefix: str,
        api_key: str) -> None:
    """Real `python -m runner` processes, as pods: their one limit is the key's in Redis.
    Each on its own would learn 2 requests/s and go at it; four of them would be 429ed."""
    import os

    runs = llm_runs(pg_store, 4, 4)
    with fake_openai(api_key, rate_limit=FakeRateLimit(
            2.0, burst_seconds=PROVIDER_BURST_SECONDS)) as fake:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TICKRUN_", "OPENAI_", "OPENROUTER_"))}
        env |= {"TICKRUN_DATABASE_URL": postgres_url, "TICKRUN_REDIS_URL": redis_url,
                "TICKRUN_REDIS_KEY_PREFIX": redis_prefix, "TICKRUN_LLM_BASE_URL": fake.base_url,
                "TICKRUN_LLM_API_KEY": api_key, "TICKRUN_RUNNER_DECISION_TIMEOUT_SECONDS": "20"}
        procs = [subprocess.Popen([sys.executable, "-m", "runner", "--run-id", str(run.id)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for run in runs]
        errors = [p.communicate(timeout=120)[1] for p in procs]
    print(f"\nrunner processes: {len(fake.requests)} requests, {fake.rate_limited} answered 429")
    assert [p.returncode for p in procs] == [0] * len(procs), errors
    for run in runs:
        assert [d.outcome for d in pg_store.list_decisions(run.id)] == ["hold"] * 4
    assert fake.rate_limited <= 1
    assert api_key not in "".join(errors)
    import redis

    settings = llm_settings(fake, api_key)
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        state = r.hgetall(f"{redis_prefix}:llm:ratelimit:{key_id(settings)}")
        assert float(state["learned_r"]) == 120  # 2/s, learned from the fake's headers
        assert not [k for k in r.scan_iter(f"{redis_prefix}:*") if api_key in k]


@pytest.mark.slow
def test_embedded_runner_processes_share_the_limit_through_a_file(
        sqlite_url: str, api_key: str) -> None:
    """The embedded default: `tickrun dev` starts a `python -m runner` per run, on SQLite
    and without Redis. The key's schedule is a file beside the database."""
    import os
    from pathlib import Path

    store = open_store(sqlite_url)
    runs = llm_runs(store, 4, 4)
    with fake_openai(api_key, rate_limit=FakeRateLimit(
            2.0, burst_seconds=PROVIDER_BURST_SECONDS)) as fake:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TICKRUN_", "OPENAI_", "OPENROUTER_"))}
        env |= {"TICKRUN_DATABASE_URL": sqlite_url, "TICKRUN_LLM_BASE_URL": fake.base_url,
                "TICKRUN_LLM_API_KEY": api_key, "TICKRUN_RUNNER_DECISION_TIMEOUT_SECONDS": "20"}
        procs = [subprocess.Popen([sys.executable, "-m", "runner", "--run-id", str(run.id)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for run in runs]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        settings = llm_settings(fake, api_key)
    print(f"\nembedded runners: {len(fake.requests)} requests, {fake.rate_limited} answered 429")
    assert [p.returncode for p in procs] == [0] * len(procs), errors
    for run in runs:
        assert [d.outcome for d in store.list_decisions(run.id)] == ["hold"] * 4
    store.close()
    assert fake.rate_limited <= 1
    state = Path(sqlite_url.removeprefix("sqlite:///")).parent / \
        f"llm-ratelimit-{key_id(settings)}.json"
    assert json.loads(state.read_text())["learned_requests"] == 120  # 2/s, from headers
    assert api_key not in state.read_text() + state.name


def test_a_429_pauses_every_run_on_the_key(
        pg_store: Store, redis_events: EventLog, redis_url: str, redis_prefix: str,
        api_key: str) -> None:
    pause = 1.5
    runs = {name: llm_runs(pg_store, 1, 4, llm=f"openai/{name}")[0] for name in "abc"}
    answered_429: list[float] = []

    def first_429(request: ChatRequest) -> Reply:
        if not answered_429:
            answered_429.append(time.perf_counter())
            return Reply.error(429, retry_after=pause)
        return Reply.text("Holding.").after(0.2)

    pauses_before = sample("tickrun_runner_llm_rate_limit_pauses_total", reason="rate_limited")
    with fake_openai(api_key, default=Reply.text("Holding.").after(0.2)) as fake:
        fake.script("a", first_429)
        settings = llm_settings(fake, api_key)
        codes = play_together(list(runs.values()), lambda run: RunnerDeps(
            store=pg_store, event_log=redis_events, stop=StopSignal(),
            settings=RunnerSettings(decision_timeout_seconds=10), llm=settings,
            llm_limiter=redis_limiter(redis_url, settings, redis_prefix)))
    assert set(codes.values()) == {EXIT_OK}
    for run in runs.values():
        assert [d.outcome for d in pg_store.list_decisions(run.id)] == ["hold"] * 4
    t429 = answered_429[0]
    # Requests sent before the 429 reached its client may still arrive just after it.
    during = [r for r in fake.requests if t429 + 0.05 < r.received_at < t429 + pause - 0.1]
    assert during == [], [(r.model, r.received_at - t429) for r in during]
    after = {r.model for r in fake.requests if r.received_at >= t429 + pause - 0.1}
    assert after == {"a", "b", "c"}  # the others were not done: they waited, too
    retry = [r for r in fake.requests_for("a") if r.received_at > t429]
    assert retry and retry[0].received_at - t429 >= pause - 0.1  # not the 50 ms backoff
    assert sample("tickrun_runner_llm_rate_limit_pauses_total",
                  reason="rate_limited") == pauses_before + 1


def test_a_slot_past_the_deadline_is_a_hold_with_its_reason(
        pg_store: Store, redis_events: EventLog, api_key: str) -> None:
    (run,) = llm_runs(pg_store, 1, 3)
    with fake_openai(api_key) as fake:
        # One request per 10 s on the key, decisions of 2 s: the second cannot fit.
        settings = llm_settings(fake, api_key, requests_per_minute=6,
                                rate_limit_burst_seconds=0)
        code = play_run(run.id, RunnerDeps(
            store=pg_store, event_log=redis_events, stop=StopSignal(),
            settings=RunnerSettings(decision_timeout_seconds=2), llm=settings))
    assert code == EXIT_OK
    decisions = pg_store.list_decisions(run.id)
    assert [(d.outcome, d.error) for d in decisions] == [
        ("hold", None), ("error", "rate_limited"), ("error", "rate_limited")]
    assert "for the shared rate limit of the provider key would pass the decision's " \
           "deadline" in str(decisions[1].reasoning)
    assert len(fake.requests) == 1  # the held steps sent nothing
    assert decisions[1].latency_ms < 500  # told at once, not after waiting for nothing


def test_redis_down_limits_within_the_process_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runner.llm_ratelimit")
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0",
                               Policy(requests_per_minute=60, burst_seconds=0),
                               key_id=secrets.token_hex(8))
    try:
        waits = [limiter.reserve(0, 60).wait for _ in range(3)]
        limiter.observe({"retry-after-ms": "100"}, 429)
        assert limiter.paused_for() > 0
    finally:
        limiter.close()
    assert waits == pytest.approx([0, 1, 2], abs=0.05)  # still limited, by the process
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(down) == 1 and "limiting within this process" in down[0].getMessage()
