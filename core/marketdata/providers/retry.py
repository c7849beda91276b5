"""One retry policy for every market data provider, enforced inside urllib3.

Both official clients send their requests through urllib3 (massive directly, alpaca-py
through requests), so one `Retry` subclass governs both: 429 and 5xx answers and
connection failures are retried with exponential backoff, a Retry-After header is
honoured, and nothing waits past the fetch's absolute deadline. A wait that would cross
the deadline is not slept: the request fails at once with `GaveUp`, which names the last
failure, so the provider can say why it gave up ("429 Too Many Requests").

A `DeadlineRetry` belongs to one fetch (its deadline is an absolute monotonic time), so
each fetch builds its own client around a fresh policy.
"""

from __future__ import annotations

import http
import time
from types import TracebackType
from typing import Any, Self, cast

from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# 0 s, 1 s, 2 s, 4 s ... between attempts (urllib3 retries the first failure at once),
# at most 30 s, so a 300 s deadline leaves room for about a dozen attempts.
BACKOFF_FACTOR = 0.5
BACKOFF_MAX = 30.0
# One attempt may take this long before it counts as a (retried) failure; the deadline
# bounds the waits between attempts, this bounds the attempt itself.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


class GaveUp(ResponseError):
    """The reason in the MaxRetryError when retrying stopped: the deadline (or a count)
    ran out. A ResponseError, so requests turns it into a RetryError."""

    def __init__(self, last: str, attempts: int, waiting: float | None) -> None:
        self.last = last
        self.attempts = attempts
        self.waiting = waiting  # the wait that would have crossed the deadline, if any
        super().__init__(self.describe())

    def describe(self) -> str:
        text = f"{self.last} ({self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if self.waiting is not None and self.waiting > 0:
            text += f", the next after {self.waiting:g} s would pass the deadline"
        return text + ")"


class DeadlineRetry(Retry):
    """urllib3's Retry, plus an absolute monotonic deadline that survives `new()`.

    `increment()` works out the wait before the next attempt (Retry-After, else the
    backoff) and raises instead of returning when that wait would end past the deadline;
    `sleep()` then sleeps exactly that planned wait (computed once, so the check and
    the sleep agree even with jitter).
    """

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.planned_wait = 0.0

    def new(self, **kw: Any) -> Self:
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def increment(self, method: str | None = None, url: str | None = None,
                  response: BaseHTTPResponse | None = None, error: Exception | None = None,
                  _pool: ConnectionPool | None = None,
                  _stacktrace: TracebackType | None = None) -> Self:
        last = _describe(response, error)
        attempts = len(self.history) + 1
        try:
            retry = super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exc:  # a count ran out: redirects, or an "other" error
            raise _max_retry(_pool, url, GaveUp(last, attempts, None)) from exc
        wait = retry.wait_before_next(response)
        if time.monotonic() + wait >= self.deadline:
            raise _max_retry(_pool, url, GaveUp(last, attempts, wait)) from error
        retry.planned_wait = wait
        return retry

    def wait_before_next(self, response: BaseHTTPResponse | None) -> float:
        """What Retry.sleep would wait: the server's Retry-After, else the backoff."""
        if self.respect_retry_after_header and response is not None:
            after = self.get_retry_after(response)
            if after:
                return after
        return self.get_backoff_time()

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.planned_wait > 0:
            time.sleep(self.planned_wait)


def retry_policy(deadline_seconds: float) -> DeadlineRetry:
    """The policy for one fetch that may retry for `deadline_seconds` from now."""
    return DeadlineRetry(
        total=None,  # no attempt count: the deadline is the limit
        connect=None, read=None, status=None,
        other=0,  # TLS and proxy failures will not heal by retrying
        redirect=3,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=BACKOFF_MAX,
        respect_retry_after_header=True,
        raise_on_status=True,  # an exhausted 429 raises, never reaches the client as data
        deadline=time.monotonic() + deadline_seconds,
    )


def gave_up(exc: BaseException) -> str:
    """A readable line for a failure that retrying did not cure: the GaveUp reason found
    in a urllib3 MaxRetryError (possibly wrapped by requests), else the error's type."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, MaxRetryError) and current.reason is not None:
            reason = current.reason
            return reason.describe() if isinstance(reason, GaveUp) else _short(reason)
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return _short(exc)


def _max_retry(pool: ConnectionPool | None, url: str | None, reason: GaveUp) -> MaxRetryError:
    # urllib3 itself raises MaxRetryError with the pool it was given, None included.
    return MaxRetryError(cast(ConnectionPool, pool), url or "", reason)


def _describe(response: BaseHTTPResponse | None, error: Exception | None) -> str:
    if response is not None:
        return _status_text(response.status)
    if error is not None:
        return _short(error)
    return "no answer"


def _status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _short(error: BaseException) -> str:
    # urllib3 errors repeat the pool and URL; the last part says what happened.
    text = str(error).rsplit(": ", 1)[-1].strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
