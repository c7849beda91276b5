"""What time it is for a live run: the wall clock, or a scaled one for tests and drills.

`TICKRUN_RUNNER_LIVE_CLOCK=START@EPOCH*SPEED` (e.g. `2025-06-02T13:29:00Z@1765000000.5*600`)
makes "now" START at the wall time EPOCH (Unix seconds) and run SPEED times as fast, so
a session plays in a fraction of its length against a stream that is driven by the same
clock. Every wait the live loop makes is in the clock's seconds, converted by `speed`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveClock:
    start: dt.datetime | None = None  # None: the wall clock
    epoch: float = 0.0
    speed: float = 1.0

    def __call__(self) -> dt.datetime:
        if self.start is None:
            return dt.datetime.now(dt.UTC)
        return self.start + dt.timedelta(seconds=(time.time() - self.epoch) * self.speed)

    def wall_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock last on the wall."""
        return max(0.0, seconds / self.speed)

    @classmethod
    def parse(cls, text: str | None) -> LiveClock:
        if not text:
            return cls()
        try:
            start, rest = text.split("@", 1)
            epoch, speed = rest.split("*", 1)
            when = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
            clock = cls(when.astimezone(dt.UTC), float(epoch), float(speed))
        except ValueError as exc:
            raise ValueError(f"a live clock is START@EPOCH*SPEED, not {text!r}") from exc
        if when.tzinfo is None or clock.speed <= 0:
            raise ValueError(f"a live clock needs a UTC START and a positive SPEED: {text!r}")
        return clock

    def __str__(self) -> str:
        if self.start is None:
            return "wall clock"
        return f"{self.start.isoformat()}@{self.epoch}*{self.speed}"
