"""One LLM rate limit per provider key, shared by every run that uses the key.

Twenty runs on one key that each retry their own 429s hammer the provider in step and
spend their deadlines on it. Instead, every request first takes a slot on the key's
shared schedule, and a 429 pauses the key for all of them.

Scheduling is by reservation (GCRA, the "generic cell rate algorithm" that redis-cell
and throttled use): a request atomically takes the next free slot and is told how long
to wait for it. Slots are handed out in arrival order, so whoever asked first goes
first and no run starves; since a run has at most one request in flight, a busy key is
shared round-robin between runs. That is the fairness. Two dimensions: requests per
minute (cost 1) and tokens per minute (cost: the request's estimated tokens); a request
waits for the later of the two. A burst of `burst_seconds` worth of the limit may go at
once, half a second by default, so that a provider bucket of a second's worth keeps
slack for network jitter.

Limits come from OpenAI's x-ratelimit-limit-requests / -tokens headers (per minute) of
every answer and are trusted for LEARNED_TTL_SECONDS after the last one, so a changed
plan is learned again; a configured limit (TICKRUN_LLM_REQUESTS_PER_MINUTE,
TICKRUN_LLM_TOKENS_PER_MINUTE) caps what is learned and applies alone where nothing is
sent. While nothing is known, one request at a time goes (a probe), so twenty runs that
start together do not all hit an unknown limit at once; an answer without rate-limit
headers makes the key unlimited (until a 429 pauses it). Probing polls, so it is not
FIFO; it lasts one answer.

A 429 (its Retry-After, retry-after-ms or x-ratelimit-reset-*) or an exhausted
x-ratelimit-remaining-* sets the key's `paused_until`: every run on the key waits, and
a request whose slot came up during a pause asks again instead of going.

Backends: Redis (every runner pod; one Lua script per operation, so a reservation is
atomic across pods, timed by Redis's clock), a flock'ed file beside the SQLite database
(the embedded default's runner processes, one per run) and in-process (tests, the bench:
one limiter per key per process, under a lock). Both run the same math: the
pure functions below, mirrored line for line by the Lua. A Redis that is down does not
stop a run: the in-process limiter takes over (logged once) and Redis is tried again
every REDIS_RETRY_SECONDS.

The key is named by a hash of (base URL, API key), never by the key itself: it is in
Redis key names and logs.

Why hand-written: limits, pyrate-limiter and throttled-py answer "allowed now?" and
leave the waiting to polling, which is neither in arrival order nor fair under
contention, and none learns limits from response headers or shares a pause.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import fcntl
import hashlib
import json
import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runner import telemetry
from runner.llm_settings import LlmSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

LEARNED_TTL_SECONDS = 600.0  # a limit not seen again for this long is learned anew
PROBE_POLL_SECONDS = 0.05  # while a probe is out, how often the others ask again
DEFAULT_PAUSE_SECONDS = 1.0  # a 429 that does not say when to come back
MAX_PAUSE_SECONDS = 300.0  # a bogus Retry-After must not hold a key for hours
REDIS_RETRY_SECONDS = 10.0  # after a Redis error, limit in-process this long, then retry


# -- the math, shared by both backends ---------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """What the settings say about a key's limit."""

    requests_per_minute: float | None = None  # caps what is learned; alone if none is
    tokens_per_minute: float | None = None
    burst_seconds: float = 0.5
    learned_ttl_seconds: float = LEARNED_TTL_SECONDS
    probe_lease_seconds: float = 30.0  # a probe whose runner died frees the key after this

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> Policy:
        return cls(requests_per_minute=settings.requests_per_minute,
                   tokens_per_minute=settings.tokens_per_minute,
                   burst_seconds=settings.rate_limit_burst_seconds,
                   probe_lease_seconds=settings.request_timeout_seconds + 5)

    @property
    def key_ttl_seconds(self) -> int:
        """How long a key's shared state outlives its last use."""
        return math.ceil(max(self.learned_ttl_seconds, self.probe_lease_seconds,
                             MAX_PAUSE_SECONDS) + 60)


@dataclass(frozen=True)
class KeyState:
    """One key's shared state; times are on the limiter's clock (Redis's, or monotonic)."""

    tat_requests: float = 0.0  # theoretical arrival time: when the schedule is free again
    tat_tokens: float = 0.0
    paused_until: float = 0.0
    probe_until: float = 0.0
    learned_at: float | None = None  # None: nothing learned
    learned_requests: float | None = None  # per minute; both None once learned: unlimited
    learned_tokens: float | None = None


@dataclass(frozen=True)
class Reservation:
    """Granted: the slot is the caller's; go after `wait` seconds (unless the key is
    paused meanwhile). Not granted: nothing was taken; either the slot would come
    later than `max_wait` (`wait` says when) or a probe is out and `wait` says when to
    ask again."""

    wait: float
    granted: bool


@dataclass(frozen=True)
class Observation:
    """What one answer (or its absence) tells the limiter."""

    answered: bool = False  # False: the request ended without a response
    ok: bool = False  # a 2xx: an answer without limits means the key is unlimited
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    pause_seconds: float = 0.0
    pause_reason: str | None = None  # "rate_limited" (a 429) or "exhausted" (remaining 0)

    @property
    def teaches(self) -> str:
        """What it teaches: "limits", "unlimited" or "" (nothing)."""
        if self.requests_per_minute is not None or self.tokens_per_minute is not None:
            return "limits"
        return "unlimited" if self.ok else ""


def limits_in_force(state: KeyState, now: float, policy: Policy
                    ) -> tuple[float | None, float | None] | None:
    """(requests, tokens) per minute, None for no limit; None when nothing is known."""
    learned = state.learned_at is not None and now - state.learned_at < policy.learned_ttl_seconds
    if not learned and policy.requests_per_minute is None and policy.tokens_per_minute is None:
        return None
    return (_lower(state.learned_requests if learned else None, policy.requests_per_minute),
            _lower(state.learned_tokens if learned else None, policy.tokens_per_minute))


def schedule(state: KeyState, now: float, tokens: float, max_wait: float, policy: Policy
             ) -> tuple[KeyState, Reservation]:
    """Take the next free slot for one request of `tokens`, unless it is beyond `max_wait`."""
    start = max(now, state.paused_until)
    limits = limits_in_force(state, now, policy)
    if limits is None:
        return _probe(state, now, start, max_wait, policy)
    rpm, tpm = limits
    start = max(start, _earliest(state.tat_requests, now, 1, rpm, policy.burst_seconds),
                _earliest(state.tat_tokens, now, tokens, tpm, policy.burst_seconds))
    wait = start - now
    if wait > max_wait:
        return state, Reservation(wait, False)
    return replace(state, tat_requests=_advance(state.tat_requests, start, 1, rpm),
                   tat_tokens=_advance(state.tat_tokens, start, tokens, tpm)
                   ), Reservation(wait, True)


def learn(state: KeyState, now: float, seen: Observation, policy: Policy) -> KeyState:
    """Fold one answer into the state: limits, the end of a probe, a pause."""
    state = replace(state, probe_until=0.0)
    if seen.teaches == "limits":
        state = replace(state, learned_at=now, learned_requests=seen.requests_per_minute,
                        learned_tokens=seen.tokens_per_minute)
    elif seen.teaches == "unlimited" and _unlimited_or_unknown(state, now, policy):
        # A bare answer (a proxy's, an error page's) never erases limits once learned.
        state = replace(state, learned_at=now, learned_requests=None, learned_tokens=None)
    return pause(state, now, seen.pause_seconds)


def pause(state: KeyState, now: float, seconds: float) -> KeyState:
    if seconds <= 0:
        return state
    until = now + min(seconds, MAX_PAUSE_SECONDS)
    return replace(state, paused_until=max(state.paused_until, until))


def _probe(state: KeyState, now: float, start: float, max_wait: float, policy: Policy
           ) -> tuple[KeyState, Reservation]:
    if state.probe_until > now:  # one request is out to learn the limit: ask again soon
        again = max(min(PROBE_POLL_SECONDS, state.probe_until - now), state.paused_until - now)
        return state, Reservation(again, False)
    wait = start - now
    if wait > max_wait:
        return state, Reservation(wait, False)
    return replace(state, probe_until=start + policy.probe_lease_seconds), Reservation(wait, True)


def _earliest(tat: float, now: float, cost: float, per_minute: float | None,
              burst_seconds: float) -> float:
    """GCRA: the earliest start for `cost` units, with a burst tolerance of
    `burst_seconds` worth of the limit (at least one request, and at least this
    request: one big prompt goes when the key is idle and is paid back after)."""
    if per_minute is None or cost <= 0:
        return now
    interval = 60.0 / per_minute
    tolerance = max(burst_seconds * per_minute / 60.0, cost, 1.0) * interval
    return max(tat, now) + cost * interval - tolerance


def _advance(tat: float, start: float, cost: float, per_minute: float | None) -> float:
    if per_minute is None:
        return tat
    return max(tat, start) + cost * 60.0 / per_minute


def _unlimited_or_unknown(state: KeyState, now: float, policy: Policy) -> bool:
    if state.learned_at is None or now - state.learned_at >= policy.learned_ttl_seconds:
        return True
    return state.learned_requests is None and state.learned_tokens is None


def _lower(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


# -- what the provider's headers say -----------------------------------------------------
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                 "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds of "1s", "6m0s", "20ms", "1h2m3.5s" (OpenAI's, Go's format) or "0.5"."""
    if text is None:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429 asks to wait: retry-after-ms, else Retry-After (seconds or a date)."""
    h = _lowered(headers)
    if (ms := _number(h.get("retry-after-ms"))) is not None:
        return max(0.0, ms / 1000)
    value = h.get("retry-after")
    if value is None:
        return None
    if (seconds := _number(value)) is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def read_headers(headers: Mapping[str, str] | None, status: int = 200) -> Observation:
    """What an answer's headers (None: no answer at all) tell the limiter."""
    if headers is None:
        return Observation()
    h = _lowered(headers)
    rpm = _positive(h.get("x-ratelimit-limit-requests"))
    tpm = _positive(h.get("x-ratelimit-limit-tokens"))
    # Exhausted: wait for one request's worth to come back, or the reset if sooner; for
    # tokens, a second's worth (the next prompt's size is not known here).
    exhausted = max(
        _exhausted(h, "requests", 60.0 / rpm if rpm else DEFAULT_PAUSE_SECONDS),
        _exhausted(h, "tokens", DEFAULT_PAUSE_SECONDS))
    seconds, reason = exhausted, ("exhausted" if exhausted > 0 else None)
    if status == 429:
        seconds, reason = max(retry_after(h) or exhausted or DEFAULT_PAUSE_SECONDS,
                              exhausted), "rate_limited"
    return Observation(answered=True, ok=200 <= status < 300, requests_per_minute=rpm,
                       tokens_per_minute=tpm, pause_seconds=seconds, pause_reason=reason)


def _exhausted(h: Mapping[str, str], what: str, refill_seconds: float) -> float:
    if _number(h.get(f"x-ratelimit-remaining-{what}")) != 0:
        return 0.0
    reset = parse_duration(h.get(f"x-ratelimit-reset-{what}"))
    return refill_seconds if reset is None else min(reset, refill_seconds)


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _number(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _positive(text: str | None) -> float | None:
    value = _number(text)
    return value if value is not None and value > 0 else None


# -- the limiters ------------------------------------------------------------------------
def key_id(settings: LlmSettings) -> str:
    """Names the provider key without revealing it (Redis keys, logs)."""
    secret = settings.api_key.get_secret_value() if settings.api_key else ""
    return hashlib.sha256(f"{settings.base_url}\0{secret}".encode()).hexdigest()[:16]


class RateLimiter(ABC):
    """A provider key's shared limit: reserve a slot before each request, tell it what
    each answer said, pause it on a 429."""

    def __init__(self, policy: Policy, key_id: str) -> None:
        self.policy = policy
        self.key_id = key_id

    @abstractmethod
    def reserve(self, tokens: float, max_wait: float) -> Reservation:
        """The next slot for a request of about `tokens` tokens, if within `max_wait`."""

    @abstractmethod
    def paused_for(self) -> float:
        """Seconds the key is still paused (a request that waited checks before going)."""

    def observe(self, headers: Mapping[str, str] | None, status: int = 200) -> None:
        """Learn from an answer's headers (None: the request ended without one)."""
        seen = read_headers(headers, status)
        if seen.pause_reason:
            self._count_pause(seen.pause_seconds, seen.pause_reason)
        self._learn(seen)

    def pause(self, seconds: float, reason: str = "rate_limited") -> None:
        """Hold every request on the key for `seconds`."""
        self._count_pause(seconds, reason)
        self._learn(Observation(pause_seconds=seconds, pause_reason=reason))

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    @abstractmethod
    def _learn(self, seen: Observation) -> None: ...

    def _count_pause(self, seconds: float, reason: str) -> None:
        telemetry.LLM_RATE_LIMIT_PAUSES.labels(reason).inc()
        level = logging.WARNING if reason == "rate_limited" else logging.INFO
        log.log(level, "LLM key %s %s: every run on it waits %.2fs", self.key_id,
                "rate limited (429)" if reason == "rate_limited" else "exhausted", seconds)


class LocalRateLimiter(RateLimiter):
    """The shared limit within one process (the embedded default, tests, the bench)."""

    def __init__(self, policy: Policy, *, key_id: str = "local",
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(policy, key_id)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = KeyState()

    @property
    def state(self) -> KeyState:
        return self._state

    def reserve(self, tokens: float, max_wait: float) -> Reservation:
        with self._lock:
            self._state, reservation = schedule(self._state, self._clock(), tokens, max_wait,
                                                self.policy)
        return reservation

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._state.paused_until - self._clock())

    def close(self) -> None:
        """Nothing to release: the limiter lives as long as the process."""

    def _learn(self, seen: Observation) -> None:
        with self._lock:
            self._state = learn(self._state, self._clock(), seen, self.policy)


class FileRateLimiter(RateLimiter):
    """The shared limit of the runner processes on one machine (the embedded default:
    `tickrun dev` starts one `python -m runner` per run, with no Redis): the key's state
    is a small JSON file beside the database, read and written under an exclusive
    flock. CLOCK_MONOTONIC is one clock for every process of the machine."""

    def __init__(self, directory: Path, policy: Policy, *, key_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(policy, key_id)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"llm-ratelimit-{key_id}.json"
        self._clock = clock

    def reserve(self, tokens: float, max_wait: float) -> Reservation:
        with self._locked() as (state, save):
            state, reservation = schedule(state, self._clock(), tokens, max_wait, self.policy)
            save(state)
        return reservation

    def paused_for(self) -> float:
        with self._locked() as (state, _):
            return max(0.0, state.paused_until - self._clock())

    def close(self) -> None:
        """Nothing held between calls."""

    def _learn(self, seen: Observation) -> None:
        with self._locked() as (state, save):
            save(learn(state, self._clock(), seen, self.policy))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[KeyState, Callable[[KeyState], None]]]:
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            f.seek(0)
            text = f.read()
            try:
                state = KeyState(**json.loads(text)) if text else KeyState()
            except (ValueError, TypeError):  # a torn or older file: start afresh
                state = KeyState()

            def save(new: KeyState) -> None:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(asdict(new)))
                f.flush()
            yield state, save


_LOCAL: dict[tuple[str, Policy], LocalRateLimiter] = {}
_LOCAL_LOCK = threading.Lock()


def local_limiter(settings: LlmSettings) -> LocalRateLimiter:
    """This process's limiter for the settings' key: every decider on the key shares it."""
    policy, name = Policy.from_settings(settings), key_id(settings)
    with _LOCAL_LOCK:
        limiter = _LOCAL.get((name, policy))
        if limiter is None:
            limiter = _LOCAL[(name, policy)] = LocalRateLimiter(policy, key_id=name)
        return limiter


def open_rate_limiter(settings: LlmSettings, *, redis_url: str | None = None,
                      prefix: str = "tickrun", timeout_seconds: float = 0.5,
                      state_dir: Path | None = None) -> RateLimiter:
    """Shared through Redis when there is one (every runner pod), else through a file in
    `state_dir` (the embedded default's runner processes), else in-process."""
    if redis_url is None:
        if state_dir is not None:
            return FileRateLimiter(state_dir, Policy.from_settings(settings),
                                   key_id=key_id(settings))
        return local_limiter(settings)
    return RedisRateLimiter(redis_url, Policy.from_settings(settings), key_id=key_id(settings),
                            prefix=prefix, timeout_seconds=timeout_seconds,
                            fallback=local_limiter(settings))


def redis_key(prefix: str, key_id: str) -> str:
    return f"{prefix}:llm:ratelimit:{key_id}"


class RedisRateLimiter(RateLimiter):
    """The shared limit across runner pods: the state is one Redis hash per key and
    every operation one Lua script, so a reservation is atomic and timed by Redis."""

    def __init__(self, url: str, policy: Policy, *, key_id: str, prefix: str = "tickrun",
                 timeout_seconds: float = 0.5, fallback: LocalRateLimiter | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(policy, key_id)
        # Short timeouts and one retry on a broken pooled connection only: a frozen Redis
        # costs a request half a second, then the in-process limiter takes over.
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
            decode_responses=True,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
        self._key = redis_key(prefix, key_id)
        self._reserve = self._redis.register_script(RESERVE_LUA)
        self._update = self._redis.register_script(UPDATE_LUA)
        self._paused = self._redis.register_script(PAUSED_LUA)
        self._fallback = fallback or LocalRateLimiter(policy, key_id=key_id)
        self._clock = clock  # tests only: None times everything by Redis's clock
        self._down_until = 0.0
        self._down = False

    def reserve(self, tokens: float, max_wait: float) -> Reservation:
        p = self.policy
        args = [tokens, max_wait, _arg(p.requests_per_minute), _arg(p.tokens_per_minute),
                p.burst_seconds, p.learned_ttl_seconds, p.probe_lease_seconds,
                PROBE_POLL_SECONDS, p.key_ttl_seconds, self._now()]
        return self._shared(
            lambda: _reservation(self._reserve(keys=[self._key], args=args)),
            lambda: self._fallback.reserve(tokens, max_wait))

    def paused_for(self) -> float:
        return self._shared(lambda: float(self._paused(keys=[self._key], args=[self._now()])),
                            self._fallback.paused_for)

    def _learn(self, seen: Observation) -> None:
        args = [seen.teaches, _arg(seen.requests_per_minute), _arg(seen.tokens_per_minute),
                min(seen.pause_seconds, MAX_PAUSE_SECONDS),
                self.policy.learned_ttl_seconds, self.policy.key_ttl_seconds, self._now()]
        self._shared(lambda: self._update(keys=[self._key], args=args),
                     lambda: self._fallback._learn(seen))

    def close(self) -> None:
        self._redis.close()

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    def _shared(self, remote: Callable[[], T], local: Callable[[], T]) -> T:
        """Through Redis; while it is down, in this process (a run never stops for it)."""
        if self._down and time.monotonic() < self._down_until:
            return local()
        try:
            result = remote()
        except redis.RedisError as exc:
            if not self._down:
                log.warning("shared LLM rate limit unavailable (Redis: %s): limiting within "
                            "this process until it is back", type(exc).__name__)
            self._down, self._down_until = True, time.monotonic() + REDIS_RETRY_SECONDS
            return local()
        if self._down:
            log.info("shared LLM rate limit back on Redis")
            self._down = False
        return result


def _arg(value: float | None) -> str:
    return "" if value is None else repr(value)


def _reservation(reply: Any) -> Reservation:
    wait, granted = reply
    return Reservation(float(wait), int(granted) == 1)


# -- the same math in Lua (numbers go in and out as strings: Redis truncates Lua numbers
# to integers, and %.6f keeps microseconds of an epoch time) ----------------------------
_LUA_COMMON = """
local function now_of(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(v)
  if v == false or v == nil or v == '' then return nil end
  return tonumber(v)
end
local function fmt(x) return string.format('%.6f', x) end
"""

RESERVE_LUA = _LUA_COMMON + """
-- schedule(): KEYS[1] the key's hash; ARGV tokens, max_wait, configured rpm, tpm ('' none),
-- burst_seconds, learned_ttl, probe_lease, probe_poll, key_ttl, now ('' Redis's clock)
local function lower(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return math.min(a, b)
end
local function earliest(tat, now, cost, per_minute, burst)
  if per_minute == nil or cost <= 0 then return now end
  local interval = 60 / per_minute
  local tolerance = math.max(burst * per_minute / 60, cost, 1) * interval
  return math.max(tat, now) + cost * interval - tolerance
end
local function advance(tat, start, cost, per_minute)
  if per_minute == nil then return tat end
  return math.max(tat, start) + cost * 60 / per_minute
end
local key = KEYS[1]
local tokens, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local conf_r, conf_t, burst = num(ARGV[3]), num(ARGV[4]), tonumber(ARGV[5])
local learned_ttl, probe_lease = tonumber(ARGV[6]), tonumber(ARGV[7])
local probe_poll, key_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = now_of(ARGV[10])
local s = redis.call('HMGET', key, 'tat_r', 'tat_t', 'paused_until', 'probe_until',
                     'learned_at', 'learned_r', 'learned_t')
local tat_r, tat_t = num(s[1]) or 0, num(s[2]) or 0
local paused_until, probe_until = num(s[3]) or 0, num(s[4]) or 0
local learned_at = num(s[5])
local learned = learned_at ~= nil and now - learned_at < learned_ttl
local start = math.max(now, paused_until)
if not learned and conf_r == nil and conf_t == nil then
  if probe_until > now then
    return {fmt(math.max(math.min(probe_poll, probe_until - now), paused_until - now)), 0}
  end
  if start - now > max_wait then return {fmt(start - now), 0} end
  redis.call('HSET', key, 'probe_until', fmt(start + probe_lease))
  redis.call('EXPIRE', key, key_ttl)
  return {fmt(start - now), 1}
end
local rpm, tpm = conf_r, conf_t
if learned then rpm, tpm = lower(num(s[6]), conf_r), lower(num(s[7]), conf_t) end
start = math.max(start, earliest(tat_r, now, 1, rpm, burst),
                 earliest(tat_t, now, tokens, tpm, burst))
if start - now > max_wait then return {fmt(start - now), 0} end
redis.call('HSET', key, 'tat_r', fmt(advance(tat_r, start, 1, rpm)),
           'tat_t', fmt(advance(tat_t, start, tokens, tpm)))
redis.call('EXPIRE', key, key_ttl)
return {fmt(start - now), 1}
"""

UPDATE_LUA = _LUA_COMMON + """
-- learn(): KEYS[1] the key's hash; ARGV teaches ('limits', 'unlimited', ''), rpm, tpm,
-- pause_seconds, learned_ttl, key_ttl, now ('' Redis's clock)
local key = KEYS[1]
local teaches, pause = ARGV[1], tonumber(ARGV[4])
local learned_ttl, key_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_of(ARGV[7])
redis.call('HDEL', key, 'probe_until')
if teaches == 'limits' then
  redis.call('HSET', key, 'learned_at', fmt(now), 'learned_r', ARGV[2], 'learned_t', ARGV[3])
elseif teaches == 'unlimited' then
  local s = redis.call('HMGET', key, 'learned_at', 'learned_r', 'learned_t')
  local at = num(s[1])
  if at == nil or now - at >= learned_ttl or (num(s[2]) == nil and num(s[3]) == nil) then
    redis.call('HSET', key, 'learned_at', fmt(now), 'learned_r', '', 'learned_t', '')
  end
end
if pause > 0 then
  local until_ = math.max(num(redis.call('HGET', key, 'paused_until')) or 0, now + pause)
  redis.call('HSET', key, 'paused_until', fmt(until_))
end
redis.call('EXPIRE', key, key_ttl)
return 1
"""

PAUSED_LUA = _LUA_COMMON + """
-- paused_for(): KEYS[1] the key's hash; ARGV now ('' Redis's clock)
local now = now_of(ARGV[1])
local until_ = num(redis.call('HGET', KEYS[1], 'paused_until')) or 0
return fmt(math.max(0, until_ - now))
"""
