"""The look-ahead audit: every dated item a tool answered, against the end of its bar.

A research tool's answer lists its items with the instant each became knowable
(`known_at`); a decision is made as of the end of its bar (core.research.pit). An item
known after that instant, or not dated at all, is a look-ahead: the tools never answer
one, so the audit finds one only when something else did (a bug, an edited ledger, an
older version). An outside tool whose server does not promise to answer as of the bar
(`point_in_time` false) on a session already over when it was asked makes the run's
look-ahead "possible": nothing can check what it answered.

The verdict is `clean`, `N items` or `possible` (the last wins: it cannot be checked).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.records import Decision
from core.research.pit import bar_end

# The tools whose answers carry dated items, and where in the answer they are.
DATED_LISTS = {"news": ("items",), "fundamentals": ("filings", "actions")}
# A tool call asked this long after its bar's end was asked about a past session.
LIVE_SLACK = dt.timedelta(minutes=5)
CLEAN = "clean"
POSSIBLE = "possible"


@dataclass(frozen=True, slots=True)
class AuditedItem:
    step: int
    bar_time: dt.datetime
    as_of: dt.datetime
    tool: str
    kind: str  # items (news), filings, actions
    label: str  # a title, a form and period, a split's ratio: for people
    known_at: dt.datetime | None
    ok: bool

    def to_json(self) -> dict[str, Any]:
        seconds = (None if self.known_at is None
                   else (self.as_of - self.known_at).total_seconds())
        return {"step": self.step, "bar_time": self.bar_time.isoformat(),
                "as_of": self.as_of.isoformat(), "tool": self.tool, "kind": self.kind,
                "label": self.label,
                "known_at": None if self.known_at is None else self.known_at.isoformat(),
                "seconds_before_as_of": seconds, "ok": self.ok}


@dataclass(frozen=True, slots=True)
class OutsideCall:
    step: int
    tool: str
    server: str | None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "tool": self.tool, "server": self.server}


@dataclass
class LookaheadAudit:
    """Fed every decision of a run (any order), it says what its tools could know."""

    interval: str
    items: list[AuditedItem] = field(default_factory=list)
    outside: list[OutsideCall] = field(default_factory=list)
    calls_checked: int = 0

    def add(self, decision: Decision) -> None:
        if not decision.tool_calls:
            return
        as_of = bar_end(self.interval, decision.bar_time)
        for call in decision.tool_calls:
            name = str(call.get("name", ""))
            if call.get("point_in_time") is False and _after_the_fact(decision, as_of):
                self.outside.append(OutsideCall(decision.step, name, call.get("server")))
            lists = DATED_LISTS.get(name)
            result = call.get("result")
            if lists is None or not isinstance(result, Mapping):
                continue
            self.calls_checked += 1
            for kind in lists:
                for entry in result.get(kind) or ():
                    if isinstance(entry, Mapping):
                        self.items.append(_audited(decision, as_of, name, kind, entry))

    @property
    def violations(self) -> list[AuditedItem]:
        return [item for item in self.items if not item.ok]

    @property
    def verdict(self) -> str:
        if self.outside:
            return POSSIBLE
        bad = len(self.violations)
        return CLEAN if not bad else f"{bad} item{'s' if bad != 1 else ''}"

    def summary(self) -> dict[str, Any]:
        """What a run's result carries."""
        return {"lookahead": self.verdict, "dated_items": len(self.items),
                "violations": len(self.violations), "outside_calls": len(self.outside)}

    def report(self) -> dict[str, Any]:
        """The whole audit: every dated item with its time against the bar's end."""
        return {**self.summary(), "research_calls": self.calls_checked,
                "items": [i.to_json() for i in self.items],
                "outside": [o.to_json() for o in self.outside]}

    def passing(self, decisions: Iterable[Decision]) -> Iterator[Decision]:
        """`decisions`, each audited on its way through (one pass serves two readers)."""
        for d in decisions:
            self.add(d)
            yield d

    @classmethod
    def of(cls, interval: str, decisions: Iterable[Decision]) -> LookaheadAudit:
        audit = cls(interval)
        for d in decisions:
            audit.add(d)
        return audit


def _audited(decision: Decision, as_of: dt.datetime, tool: str, kind: str,
             entry: Mapping[str, Any]) -> AuditedItem:
    known_at = _instant(entry.get("known_at"))
    return AuditedItem(step=decision.step, bar_time=decision.bar_time, as_of=as_of,
                       tool=tool, kind=kind, label=_label(entry), known_at=known_at,
                       ok=known_at is not None and known_at <= as_of)


def _after_the_fact(decision: Decision, as_of: dt.datetime) -> bool:
    """The call was made about a session already over (every replay of the past); a
    decision without its recording time counts as one."""
    return decision.decided_at is None or decision.decided_at > as_of + LIVE_SLACK


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None  # a naive time dates nothing


def _label(entry: Mapping[str, Any]) -> str:
    for key in ("title", "label"):
        if isinstance(entry.get(key), str):
            return str(entry[key])[:120]
    parts = [str(entry[k]) for k in ("form", "fiscal_period", "fiscal_year", "kind", "ex_date")
             if entry.get(k) is not None]
    return " ".join(parts)[:120] or "an item"

