"""The dated research items: what a provider sends, what the store keeps, what a tool
answers. Each carries the instant the market could first know it (`known_at`): a tool
answers an item only when `known_at` is at or before the end of the bar being decided.

- News: `published_at` as the provider says it; an item without one is never answered
  (stored with `published_at` None so the audit can count it, never served).
- Filings: the figures of one report (a 10-Q or 10-K), known from their acceptance
  time when the provider gives it, else from the latest moment a filing of that filing
  date can have been accepted (EDGAR: 17:30 New York; later ones take the next day's
  date). Never by the fiscal period's end: a quarter that ended in March is filed in
  May.
- Corporate actions (splits, dividends): known from their announcement (declaration)
  date's start in New York only when the provider gives one, else from the start of
  the ex-date (the latest it can have been public).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
# EDGAR's daily cutoff: a filing accepted after it carries the next business day's date.
EDGAR_CUTOFF = dt.time(17, 30)


@dataclass(frozen=True, slots=True)
class NewsItem:
    source: str  # "polygon", "alpaca"
    provider_id: str  # the provider's own id: an item is stored once per (source, id)
    published_at: dt.datetime | None  # timezone-aware UTC; None: never answered
    tickers: tuple[str, ...]
    title: str
    summary: str | None
    publisher: str | None  # who wrote it (Benzinga, The Motley Fool, ...)
    url: str | None
    learned_at: dt.datetime | None = None  # when tickrun stored it (set by the store)

    @property
    def known_at(self) -> dt.datetime | None:
        return self.published_at


class Statement(StrEnum):
    INCOME = "income_statement"
    BALANCE_SHEET = "balance_sheet"
    CASH_FLOW = "cash_flow_statement"


@dataclass(frozen=True, slots=True)
class Filing:
    """One report's figures: {statement: {line item: value}} in the report's currency."""

    source: str
    provider_id: str  # stable per filing: the provider's id, else its filing URL
    symbol: str
    form: str | None  # 10-Q, 10-K, when known
    fiscal_year: int | None
    fiscal_period: str | None  # Q1..Q4, FY
    period_end: dt.date | None
    filing_date: dt.date
    accepted_at: dt.datetime | None  # EDGAR's acceptance time, UTC, when the provider says
    figures: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    url: str | None = None
    learned_at: dt.datetime | None = None

    @property
    def known_at(self) -> dt.datetime:
        if self.accepted_at is not None:
            return self.accepted_at
        return dt.datetime.combine(self.filing_date, EDGAR_CUTOFF, NEW_YORK).astimezone(dt.UTC)


class ActionKind(StrEnum):
    SPLIT = "split"
    DIVIDEND = "dividend"


@dataclass(frozen=True, slots=True)
class CorporateAction:
    source: str
    provider_id: str
    symbol: str
    kind: ActionKind
    ex_date: dt.date  # a split's execution date, a dividend's ex-dividend date
    announced_on: dt.date | None  # declaration date, when the provider says
    # split: split_from / split_to; dividend: cash_amount, currency, pay_date, record_date
    details: dict[str, Any] = field(default_factory=dict)
    learned_at: dt.datetime | None = None

    @property
    def known_at(self) -> dt.datetime:
        day = self.announced_on or self.ex_date
        return dt.datetime.combine(day, dt.time(0), NEW_YORK).astimezone(dt.UTC)
