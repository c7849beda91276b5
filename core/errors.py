"""A small error hierarchy, mapped to HTTP status codes only at the API edge."""

from __future__ import annotations


class TickrunError(Exception):
    """Base of every error tickrun raises on purpose."""


class NotFound(TickrunError):
    """The resource does not exist, or belongs to another user (never say which)."""


class Conflict(TickrunError):
    """The request conflicts with the current state (duplicate signature, idempotency)."""


class InvalidSpec(TickrunError):
    """A run spec or model that cannot be played; refused before any step runs."""


class IllegalTransition(Conflict):
    """A run status change the state machine does not allow."""

    def __init__(self, run_id: int, current: str, target: str) -> None:
        super().__init__(f"run {run_id}: cannot go from {current} to {target}")
        self.run_id = run_id
        self.current = current
        self.target = target


class Superseded(TickrunError):
    """A newer attempt has taken the run over: this attempt's writes are refused, and it
    exits without finalizing (fencing: one runner plays a run at a time)."""

    def __init__(self, run_id: int, attempt: int) -> None:
        super().__init__(f"run {run_id}: attempt {attempt} was superseded by a newer one")
        self.run_id = run_id
        self.attempt = attempt


class TemporaryError(TickrunError):
    """Worth retrying after a delay (a dependency was briefly unavailable)."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class StoreUnavailable(TemporaryError):
    """The database does not answer (restarting, unreachable, out of connections). What
    was being written may or may not have committed: callers retry idempotent work."""


class NoMarketData(InvalidSpec):
    """The provider has no bars for a symbol on a session day (an unknown or delisted
    symbol, or a day it does not cover): the run cannot be played, and a retry will not
    change that."""


class NoResearchData(InvalidSpec):
    """Research (news, filings, corporate actions) for days that were never fetched, and
    no provider to fetch them from: the message names the `tickrun data fetch` that
    fills them."""


class ProviderRefused(TickrunError):
    """A market data provider refused the request for good (a wrong key, a plan without
    the data, a malformed request): do not retry."""


class ProviderUnavailable(TemporaryError):
    """A market data provider did not answer within the fetch deadline (rate limited,
    5xx, unreachable): a later attempt may succeed."""
