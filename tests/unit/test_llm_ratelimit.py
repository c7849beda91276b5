"""The shared LLM rate limit's math, on an injected clock: spacing, burst, arrival order,
deadlines, pauses, learning limits from headers, and the probe before anything is known.
(The Lua mirror and the sharing across processes are in tests/integration.)"""

from __future__ import annotations

import datetime as dt
import email.utils
import random

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from runner.llm_ratelimit import (
    PROBE_POLL_SECONDS,
    LocalRateLimiter,
    Policy,
    key_id,
    local_limiter,
    parse_duration,
    read_headers,
    redis_key,
    retry_after,
)
from runner.llm_settings import LlmSettings


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **policy: float | None) -> LocalRateLimiter:
    return LocalRateLimiter(Policy(**policy), clock=clock)  # type: ignore[arg-type]


def waits(lim: LocalRateLimiter, n: int, tokens: float = 0, max_wait: float = 60) -> list[float]:
    out = []
    for _ in range(n):
        r = lim.reserve(tokens, max_wait)
        assert r.granted
        out.append(round(r.wait, 6))
    return out


def openai_headers(rpm: int = 300, tpm: int | None = None, **extra: str) -> dict[str, str]:
    h = {"x-ratelimit-limit-requests": str(rpm), "x-ratelimit-remaining-requests": "299",
         "x-ratelimit-reset-requests": "200ms"}
    if tpm is not None:
        h |= {"x-ratelimit-limit-tokens": str(tpm), "x-ratelimit-remaining-tokens": str(tpm),
              "x-ratelimit-reset-tokens": "0s"}
    return h | extra


def test_requests_are_spaced_at_the_limit() -> None:
    clock = Clock()
    lim = limiter(clock, requests_per_minute=60, burst_seconds=0)
    assert waits(lim, 5) == [0, 1, 2, 3, 4]
    clock.now += 10  # idle: the schedule is free again, but no credit piles up
    assert waits(lim, 3) == [0, 1, 2]


def test_a_burst_of_half_a_second_then_the_rate() -> None:
    clock = Clock()
    lim = limiter(clock, requests_per_minute=300, burst_seconds=0.5)  # 5/s, 2.5 at once
    assert waits(lim, 6) == [0, 0, 0.1, 0.3, 0.5, 0.7]
    clock.now += 0.7  # the one at +0.7 goes now; the next keeps the spacing
    assert waits(lim, 1) == [0.2]


def test_tokens_per_minute_spaces_by_size_and_a_big_prompt_goes_when_idle() -> None:
    clock = Clock()
    lim = limiter(clock, tokens_per_minute=6000, burst_seconds=0.5)  # 100 tokens/s
    assert waits(lim, 3, tokens=100) == [0, 1, 2]
    clock.now += 100
    assert waits(lim, 2, tokens=1000) == [0, 10]  # over the burst: goes, then is paid back


def test_the_later_of_requests_and_tokens_decides() -> None:
    clock = Clock()
    lim = limiter(clock, requests_per_minute=60, tokens_per_minute=600, burst_seconds=0)
    assert waits(lim, 2, tokens=1) == [0, 1]  # requests decide: one a second
    assert waits(lim, 1, tokens=50) == [2]  # 50 tokens (5 s at 10/s) go at the request slot
    assert waits(lim, 1, tokens=1) == [7]  # ... and are paid back before the next one


def test_slots_are_given_in_arrival_order_across_runs() -> None:
    """Twenty runs asking at random moments with random sizes: whoever asked first goes
    first (start times never go back), and nobody is starved."""
    clock = Clock()
    lim = limiter(clock, requests_per_minute=300, tokens_per_minute=60_000, burst_seconds=0.5)
    rng = random.Random(7)
    starts: list[tuple[float, int]] = []
    for i in range(400):
        clock.now += rng.uniform(0, 0.1)
        r = lim.reserve(rng.choice([10, 500, 2000]), max_wait=1e9)
        assert r.granted
        starts.append((clock.now + r.wait, i % 20))
    times = [t for t, _ in starts]
    assert times == sorted(times)
    # And the rate holds: 400 requests at 5/s take at least (400 - burst) / 5 seconds.
    assert times[-1] - times[0] >= (400 - 3) / 5


def test_a_slot_beyond_max_wait_is_refused_and_takes_nothing() -> None:
    clock = Clock()
    lim = limiter(clock, requests_per_minute=60, burst_seconds=0)
    assert waits(lim, 3) == [0, 1, 2]
    refused = lim.reserve(0, max_wait=2.5)
    assert not refused.granted and refused.wait == pytest.approx(3)
    assert lim.reserve(0, max_wait=3).wait == pytest.approx(3)  # the same slot, still free


def test_a_429_pauses_the_key_for_everyone_and_counts() -> None:
    clock = Clock()
    lim = limiter(clock, requests_per_minute=6000)
    before = REGISTRY.get_sample_value("tickrun_runner_llm_rate_limit_pauses_total",
                                       {"reason": "rate_limited"}) or 0
    lim.observe({"retry-after-ms": "1500"} | openai_headers(6000), 429)
    assert lim.paused_for() == pytest.approx(1.5)
    assert lim.reserve(0, 60).wait == pytest.approx(1.5)
    refused = lim.reserve(0, max_wait=1.0)
    assert not refused.granted and refused.wait >= 1.5
    assert REGISTRY.get_sample_value("tickrun_runner_llm_rate_limit_pauses_total",
                                     {"reason": "rate_limited"}) == before + 1
    clock.now += 2
    assert lim.paused_for() == 0 and lim.reserve(0, 60).wait == pytest.approx(0)


def test_a_429_without_retry_after_waits_for_the_reset_or_a_second() -> None:
    assert read_headers({}, 429).pause_seconds == 1.0
    exhausted = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                 "x-ratelimit-reset-requests": "350ms"}
    assert read_headers(exhausted, 429).pause_seconds == pytest.approx(0.35)
    assert read_headers({"retry-after": "3"} | exhausted, 429).pause_seconds == 3


def test_remaining_zero_pauses_until_one_request_is_back() -> None:
    seen = read_headers({"x-ratelimit-limit-requests": "60",
                         "x-ratelimit-remaining-requests": "0",
                         "x-ratelimit-reset-requests": "6m0s"})
    assert seen.pause_reason == "exhausted" and seen.pause_seconds == pytest.approx(1.0)
    seen = read_headers({"x-ratelimit-limit-requests": "600",
                         "x-ratelimit-remaining-requests": "0",
                         "x-ratelimit-reset-requests": "20ms"})
    assert seen.pause_seconds == pytest.approx(0.02)
    assert read_headers(openai_headers()).pause_reason is None


def test_the_limit_is_learned_from_headers_and_a_setting_caps_it() -> None:
    clock = Clock()
    lim = limiter(clock, burst_seconds=0)
    lim.observe(openai_headers(rpm=120))
    assert waits(lim, 3) == [0, 0.5, 1.0]  # 2/s, as the provider said
    capped = limiter(Clock(), requests_per_minute=60, burst_seconds=0)
    capped.observe(openai_headers(rpm=120))
    assert waits(capped, 3) == [0, 1, 2]  # the setting is lower: it wins
    higher = limiter(Clock(), requests_per_minute=6000, burst_seconds=0)
    higher.observe(openai_headers(rpm=120))
    assert waits(higher, 2) == [0, 0.5]  # the provider's is lower: it wins


def test_a_learned_limit_expires_and_is_probed_again() -> None:
    clock = Clock()
    lim = limiter(clock, burst_seconds=0, learned_ttl_seconds=600)
    lim.observe(openai_headers(rpm=60))
    assert waits(lim, 2) == [0, 1]
    clock.now += 601
    assert lim.reserve(0, 60).granted  # the probe
    assert not lim.reserve(0, 60).granted


def test_until_a_limit_is_known_one_request_at_a_time_probes() -> None:
    clock = Clock()
    lim = limiter(clock)
    probe = lim.reserve(0, 60)
    assert probe.granted and probe.wait == 0
    held = lim.reserve(0, 60)
    assert not held.granted and held.wait == pytest.approx(PROBE_POLL_SECONDS)
    clock.now += 0.3
    assert not lim.reserve(0, 60).granted  # still out
    lim.observe(openai_headers(rpm=60))  # its answer teaches the limit
    assert lim.reserve(0, 60).granted


def test_a_probe_that_failed_without_an_answer_frees_the_next_one() -> None:
    clock = Clock()
    lim = limiter(clock)
    assert lim.reserve(0, 60).granted
    lim.observe(None)  # a timeout, a dropped connection
    assert lim.reserve(0, 60).granted
    assert not lim.reserve(0, 60).granted


def test_a_probe_whose_runner_died_is_released_by_its_lease() -> None:
    clock = Clock()
    lim = limiter(clock, probe_lease_seconds=30)
    assert lim.reserve(0, 60).granted
    clock.now += 29
    assert not lim.reserve(0, 60).granted
    clock.now += 2
    assert lim.reserve(0, 60).granted


def test_an_answer_without_rate_limit_headers_makes_the_key_unlimited() -> None:
    clock = Clock()
    lim = limiter(clock)
    assert lim.reserve(0, 60).granted
    lim.observe({"content-type": "application/json"})
    assert waits(lim, 50) == [0] * 50
    lim.observe({"retry-after-ms": "200"}, 429)  # until a 429 pauses it
    assert lim.reserve(0, 60).wait == pytest.approx(0.2)


def test_a_bare_answer_does_not_erase_a_learned_limit() -> None:
    clock = Clock()
    lim = limiter(clock, burst_seconds=0)
    lim.observe(openai_headers(rpm=60))
    lim.observe({})  # an answer from a proxy, without the provider's headers
    assert waits(lim, 2) == [0, 1]
    lim.observe({}, 500)
    assert waits(lim, 1) == [2]


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1), ("6m0s", 360), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5),
    ("250us", 0.00025), ("7.66s", 7.66), ("", None), ("soon", None), ("1x", None),
    (None, None)])
def test_durations_in_openai_format(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_in_every_form() -> None:
    assert retry_after({"Retry-After-Ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    when = retry_after({"retry-after": email.utils.format_datetime(later, usegmt=True)})
    assert when is not None and 28 < when <= 30
    assert retry_after({"retry-after": "whenever"}) is None and retry_after({}) is None


def test_the_key_is_named_by_a_hash_that_never_shows_the_secret() -> None:
    secret = "sk-proj-THISISASECRETKEY1234567890"
    a = LlmSettings(provider="openai", api_key=SecretStr(secret))
    b = LlmSettings(provider="openai", api_key=SecretStr(secret + "x"))
    c = LlmSettings(provider="openai", api_key=SecretStr(secret), base_url="http://x/v1")
    assert len({key_id(a), key_id(b), key_id(c)}) == 3
    name = redis_key("tickrun", key_id(a))
    assert secret not in name and secret[8:20] not in name
    # One limiter per key per process: every decider on the key shares it.
    assert local_limiter(a) is local_limiter(a.model_copy()) and local_limiter(a) is not \
        local_limiter(b)


def test_settings_give_the_policy() -> None:
    s = LlmSettings(provider="openai", api_key=SecretStr("k"), requests_per_minute=500,
                    tokens_per_minute=200_000, rate_limit_burst_seconds=1.0)
    p = Policy.from_settings(s)
    assert (p.requests_per_minute, p.tokens_per_minute, p.burst_seconds) == (500, 200_000, 1.0)
    assert p.probe_lease_seconds > s.request_timeout_seconds
