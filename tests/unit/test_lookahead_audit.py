"""The look-ahead audit over recorded decisions: dated items against their bar's end."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.records import Decision
from core.research.audit import LookaheadAudit

OPEN = dt.datetime(2025, 6, 2, 13, 30, tzinfo=dt.UTC)  # 09:30 New York
DAY = dt.datetime(2025, 6, 2, tzinfo=dt.UTC)  # a daily bar: its session date at midnight


def decision(step: int, bar_time: dt.datetime, calls: list[dict[str, Any]],
             decided_at: dt.datetime | None = None) -> Decision:
    return Decision(run_id=1, step=step, bar_time=bar_time, action="hold", orders=[],
                    reasoning=None, outcome="hold", latency_ms=1.0, tool_calls=calls,
                    decided_at=decided_at)


def news_call(*known: str | None) -> dict[str, Any]:
    items = [{"title": f"item {i}", **({"known_at": k} if k is not None else {})}
             for i, k in enumerate(known)]
    return {"name": "news", "args": {"symbol": "AAPL"}, "result": {"items": items}}


def test_items_known_by_the_bars_end_are_clean_at_minute_resolution() -> None:
    # The 09:30 bar ends 09:31:00: an item of 09:31:00 is in, one of 09:31:01 is not.
    audit = LookaheadAudit.of("1m", [
        decision(0, OPEN, [news_call("2025-06-02T13:31:00+00:00",
                                     "2025-06-02T13:00:00+00:00")])])
    assert audit.verdict == "clean"
    assert len(audit.items) == 2 and audit.calls_checked == 1
    late = LookaheadAudit.of("1m", [
        decision(0, OPEN, [news_call("2025-06-02T13:31:01+00:00")])])
    assert late.verdict == "1 item"
    assert late.report()["items"][0]["seconds_before_as_of"] == -1.0


def test_a_daily_bar_ends_at_the_close_and_undated_items_always_fail() -> None:
    calls = [news_call("2025-06-02T20:00:00+00:00", "2025-06-02T20:00:01+00:00", None)]
    audit = LookaheadAudit.of("1d", [decision(0, DAY, calls)])
    assert [i.ok for i in audit.items] == [True, False, False]
    assert audit.verdict == "2 items"


def test_a_filing_is_checked_by_when_it_was_known_not_its_period() -> None:
    filing = {"form": "10-K", "fiscal_period": "FY", "fiscal_year": 2024,
              "period_end": "2024-12-31", "filing_date": "2025-06-03",
              "known_at": "2025-06-03T21:30:00+00:00"}
    call = {"name": "fundamentals", "args": {"symbol": "AAPL"},
            "result": {"filings": [filing], "actions": []}}
    audit = LookaheadAudit.of("1d", [decision(0, DAY, [call])])
    assert audit.verdict == "1 item"
    assert audit.items[0].label == "10-K FY 2024"


def test_an_outside_tool_not_point_in_time_makes_it_possible_on_a_past_session() -> None:
    outside = {"name": "web__search", "server": "web", "point_in_time": False,
               "args": {}, "result": {"text": "..."}}
    trusted = {**outside, "server": "archive", "point_in_time": True}
    past = LookaheadAudit.of("1m", [
        decision(0, OPEN, [outside], decided_at=OPEN + dt.timedelta(days=300))])
    assert past.verdict == "possible"
    assert past.report()["outside"] == [{"step": 0, "tool": "web__search", "server": "web"}]
    # Asked while the bar was live, or of a server that answers as of the bar: clean.
    live = LookaheadAudit.of("1m", [
        decision(0, OPEN, [outside], decided_at=OPEN + dt.timedelta(seconds=70))])
    assert live.verdict == "clean"
    assert LookaheadAudit.of("1m", [decision(0, OPEN, [trusted])]).verdict == "clean"


def test_other_tools_and_refusals_are_not_dated_items() -> None:
    calls = [{"name": "buy", "args": {}, "result": {"status": "filled"}},
             {"name": "news", "args": {}, "result": {"status": "unavailable",
                                                     "reason": "not configured"}}]
    audit = LookaheadAudit.of("1m", [decision(0, OPEN, calls)])
    assert audit.verdict == "clean" and audit.items == []


def test_a_daily_bar_ends_at_its_sessions_close_however_its_midnight_is_stamped() -> None:
    from core.research.pit import bar_end

    close = dt.datetime(2025, 6, 2, 20, 0, tzinfo=dt.UTC)
    assert bar_end("1d", DAY) == close  # the runner's timeline: midnight UTC
    assert bar_end("1d", dt.datetime(2025, 6, 2, 4, 0, tzinfo=dt.UTC)) == close  # New York
    # A Monday (midnight UTC is Sunday evening in New York) and a half day.
    assert bar_end("1d", dt.datetime(2025, 3, 3, tzinfo=dt.UTC)).hour == 21
    assert bar_end("1d", dt.datetime(2024, 11, 29, tzinfo=dt.UTC)).hour == 18
    assert bar_end("1m", OPEN) == OPEN + dt.timedelta(minutes=1)
