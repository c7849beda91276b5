"""The agent's research tools: `news` and `fundamentals`, answered as of the end of the
bar being decided (StepContext.as_of), never later.

Every answer is bounded (items, characters per text, characters in all) and says how
many items it left out; every dated item in it carries `known_at`, the instant it became
knowable, which the look-ahead audit (core.research.audit) checks against the bar. The
tools exist only for a run whose data source serves research (runner.research).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from core.research.items import CorporateAction, Filing, NewsItem
from core.store.research import ResearchKind
from runner.deciders.base import StepContext, number
from runner.research import ResearchUnavailable, RunResearch

MAX_NEWS_ITEMS = 10
MAX_LOOKBACK_HOURS = 24 * 30
MAX_TEXT_CHARS = 300  # a title or summary, cut with an ellipsis
MAX_ANSWER_CHARS = 4000  # items past it are left out (and counted)
MAX_FILINGS = 2  # the latest and the one before, to compare
MAX_ACTIONS = 5
# The lines of each statement an answer shows (Massive's keys), in this order; a report
# with none of them shows its first lines instead.
KEY_LINES = {
    "income_statement": ("revenues", "gross_profit", "operating_income_loss",
                         "net_income_loss", "basic_earnings_per_share",
                         "diluted_earnings_per_share"),
    "balance_sheet": ("assets", "current_assets", "liabilities", "current_liabilities",
                      "long_term_debt", "equity"),
    "cash_flow_statement": ("net_cash_flow_from_operating_activities",
                            "net_cash_flow_from_investing_activities",
                            "net_cash_flow_from_financing_activities", "net_cash_flow"),
}
FALLBACK_LINES = 8


class NewsArgs(BaseModel):
    symbol: str = Field(description="Ticker of this run")
    lookback_hours: int = Field(default=24, description=f"Hours back from now, 1 to "
                                                        f"{MAX_LOOKBACK_HOURS}")
    query: str | None = Field(default=None, description="Words every item must contain")


class SymbolArgs(BaseModel):
    symbol: str = Field(description="Ticker of this run")


ToolSpec = tuple[Callable[..., dict[str, Any]], type[BaseModel], str]


def research_tools(ctx: StepContext, research: RunResearch,
                   known: Callable[[str], str]) -> list[ToolSpec]:
    """The research tools `research` can serve, as (function, arguments, description)
    for llm_tools to wrap; `known` checks a symbol is the run's (raising the order
    tools' Rejected otherwise)."""
    as_of = ctx.as_of

    def news(symbol: str, lookback_hours: int = 24, query: str | None = None
             ) -> dict[str, Any]:
        symbol = known(symbol)
        hours = max(1, min(lookback_hours, MAX_LOOKBACK_HOURS))
        since = as_of - dt.timedelta(hours=hours)
        words = " ".join(query.split())[:100] if query else None
        try:
            items, total = research.news(symbol, since=since, as_of=as_of, query=words,
                                         limit=MAX_NEWS_ITEMS)
        except ResearchUnavailable as exc:
            return _unavailable(symbol, as_of, str(exc))
        listed = _bounded([news_view(i) for i in items])
        return {"symbol": symbol, "as_of": as_of.isoformat(), "since": since.isoformat(),
                "query": words, "items": listed, "not_listed": total - len(listed)}

    def fundamentals(symbol: str) -> dict[str, Any]:
        symbol = known(symbol)
        try:
            filings = research.filings(symbol, as_of=as_of, limit=MAX_FILINGS)
            actions = (research.actions(symbol, as_of=as_of, limit=MAX_ACTIONS)
                       if ResearchKind.ACTIONS in research.kinds else [])
        except ResearchUnavailable as exc:
            return _unavailable(symbol, as_of, str(exc))
        return {"symbol": symbol, "as_of": as_of.isoformat(),
                "filings": [filing_view(f) for f in filings],
                "actions": [action_view(a) for a in actions]}

    tools: list[ToolSpec] = [
        (news, NewsArgs, "News about a symbol published up to now (this bar's end), "
                         f"newest first, at most {MAX_NEWS_ITEMS}.")]
    if ResearchKind.FILINGS in research.kinds:
        tools.append((fundamentals, SymbolArgs,
                      "The latest financial statements filed before now (by filing time, "
                      "not fiscal period) and recent splits and dividends."))
    return tools


# -- answers -------------------------------------------------------------------------------
def news_view(item: NewsItem) -> dict[str, Any]:
    published = item.published_at.isoformat() if item.published_at else None
    view = {"published_at": published, "known_at": published,
            "title": _cut(item.title), "summary": _cut(item.summary),
            "publisher": item.publisher, "url": item.url, "tickers": list(item.tickers)}
    return {k: v for k, v in view.items() if v is not None}


def filing_view(filing: Filing) -> dict[str, Any]:
    view = {"form": filing.form, "fiscal_year": filing.fiscal_year,
            "fiscal_period": filing.fiscal_period,
            "period_end": filing.period_end.isoformat() if filing.period_end else None,
            "filing_date": filing.filing_date.isoformat(),
            "known_at": filing.known_at.isoformat(),
            "figures": {name: _key_lines(name, lines)
                        for name, lines in filing.figures.items() if lines}}
    return {k: v for k, v in view.items() if v is not None}


def action_view(action: CorporateAction) -> dict[str, Any]:
    view = {"kind": action.kind.value, "ex_date": action.ex_date.isoformat(),
            "announced_on": action.announced_on.isoformat() if action.announced_on else None,
            "known_at": action.known_at.isoformat(), **action.details}
    return {k: (str(v) if isinstance(v, Decimal | dt.date) else v)
            for k, v in view.items() if v is not None}


def _key_lines(statement: str, lines: dict[str, Decimal]) -> dict[str, str]:
    wanted = [k for k in KEY_LINES.get(statement, ()) if k in lines]
    chosen = wanted or list(lines)[:FALLBACK_LINES]
    return {k: number(lines[k]) for k in chosen}


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS - 1] + "…"


def _bounded(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As many items as fit in MAX_ANSWER_CHARS (at least one)."""
    kept: list[dict[str, Any]] = []
    used = 0
    for view in views:
        used += len(json.dumps(view))
        if kept and used > MAX_ANSWER_CHARS:
            break
        kept.append(view)
    return kept


def _unavailable(symbol: str, as_of: dt.datetime, reason: str) -> dict[str, Any]:
    return {"status": "unavailable", "symbol": symbol, "as_of": as_of.isoformat(),
            "reason": reason[:300]}
