"""Blind runs: the agent sees neither the ticker nor the calendar.

A model may have read about the very session it trades (a backtest inside its training
data); a blind run tests whether it trades the prices or its memory. Its tickers are
pseudonyms (STOCK_A, STOCK_B, ... in the run's symbol order) and its times are relative
to the run's first bar: `minute +12` of an intraday session, `day +3` of a daily range
(trading days; earlier bars count down: `day -1`). The prompt, the step messages and
every tool answer go through one Blinding; the tools take the pseudonyms. Research and
outside tools are not offered to a blind run: their answers are dated by nature.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.calendar import sessions_in_range
from core.records import Run

# An ISO date, or date and time (with seconds, fractions and an offset when present).
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                  r"(?:Z|[+-]\d{2}:\d{2})?)?")


@dataclass(frozen=True, slots=True)
class Blinding:
    pseudonyms: dict[str, str]  # ticker -> pseudonym
    origin: dt.datetime  # the run's first bar (UTC)
    intraday: bool

    @classmethod
    def of(cls, run: Run, first_bar: dt.datetime) -> Blinding:
        names = {s: f"STOCK_{chr(ord('A') + i)}" for i, s in enumerate(run.spec.symbols)}
        return cls(names, first_bar.astimezone(dt.UTC), run.spec.mode.value == "intraday")

    # -- names -------------------------------------------------------------------------
    def symbol(self, ticker: str) -> str:
        return self.pseudonyms.get(ticker, ticker)

    def ticker(self, shown: str) -> str:
        """The ticker a pseudonym stands for (any case); anything else as given."""
        wanted = shown.strip().upper()
        for ticker, pseudonym in self.pseudonyms.items():
            if pseudonym == wanted:
                return ticker
        return shown

    # -- times -------------------------------------------------------------------------
    def time(self, when: dt.datetime) -> str:
        when = when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
        if self.intraday:
            return f"minute {int((when - self.origin).total_seconds() // 60):+d}"
        return f"day {self._sessions_between(when.date()):+d}"

    def day(self, day: dt.date) -> str:
        return f"day {self._sessions_between(day):+d}"

    def _sessions_between(self, day: dt.date) -> int:
        first = self.origin.date()
        if day >= first:
            return len(sessions_in_range(first, day)) - 1
        return -(len(sessions_in_range(day, first)) - 1)

    # -- text and answers --------------------------------------------------------------
    def text(self, text: str) -> str:
        """Free text (a reason, a prompt line) with tickers and dates replaced."""
        for ticker, pseudonym in self.pseudonyms.items():
            text = re.sub(rf"\b{re.escape(ticker)}\b", pseudonym, text)
        return _ISO.sub(self._relative, text)

    def answer(self, value: Any) -> Any:
        """A tool's JSON answer, every string in it blinded."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.answer(v) for k, v in value.items()}
        if isinstance(value, Sequence) and not isinstance(value, bytes):
            return [self.answer(v) for v in value]
        return value

    def _relative(self, found: re.Match[str]) -> str:
        text = found.group(0)
        try:
            if len(text) == 10:
                return self.day(dt.date.fromisoformat(text))
            return self.time(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return "a date"
