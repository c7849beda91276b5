"""`python -m bench research`: the agent's research tools answered from the cache.

A research cache holding a busy symbol's month (ITEMS_PER_DAY news items a day, three
years of quarterly filings, splits and dividends) on PostgreSQL and on SQLite; then the
`news` and `fundamentals` tools of one intraday session, asked at every one of its 390
minutes as a step would (the cache check, the point-in-time query, the bounded answer):

- `news_ms_p50/p99`, `fundamentals_ms_p50/p99`: one tool answer, no provider involved;
- `tool_schema_tokens`: what binding the two tools adds to every model call (their
  JSON schemas, as ChatOpenAI sends them);
- `news_answer_tokens`, `fundamentals_answer_tokens`: the median answer's size, which a
  step that calls the tool adds to its next model call.

Tokens are estimated as characters / 4 (OpenAI's rule of thumb, the same estimate the
decider's rate limiter uses); no tokenizer is downloaded here.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from langchain_core.utils.function_calling import convert_to_openai_tool

from bench._support import emit, percentile
from core import calendar
from core.records import Portfolio, Run
from core.research.cache import ResearchCache
from core.research.items import ActionKind, CorporateAction, Filing, NewsItem
from core.store import Store, open_store
from core.store.research import ResearchKind
from core.store.sqlite import SqliteStore
from runner.deciders.base import StepContext
from runner.deciders.llm_tools import build_tools
from runner.research import RunResearch
from tests.factories import intraday_spec, make_model, make_run
from tests.servers import start_postgres

SYMBOL = "AAPL"
SESSION = dt.date(2025, 6, 2)
ITEMS_PER_DAY = 60
DAYS = 31
SOURCE = "polygon"


def main(argv: list[str]) -> int:
    results: dict[str, Any] = {"bench": "research", "items_per_day": ITEMS_PER_DAY,
                               "days": DAYS, "steps": 0}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteStore(str(Path(tmp) / "bench.db"))
        sqlite.migrate()
        results["sqlite"] = measure(sqlite)
        sqlite.close()
    postgres = start_postgres()
    try:
        store = open_store(postgres.url(database="postgres"))
        store.migrate()
        results["postgres"] = measure(store)
        store.close()
    finally:
        postgres.stop()
    results["steps"] = len(calendar.session_minutes(SESSION))
    emit(results)
    return 0


def measure(store: Store) -> dict[str, Any]:
    fill(store)
    run = make_run(store, intraday_spec(SESSION, data="polygon"),
                   user_id="bench", model=make_model(store, "bench", "bench-research"))
    research = RunResearch(store=store, source=SOURCE, kinds=frozenset(ResearchKind),
                           cache=ResearchCache(store, SOURCE, None))
    news_ms: list[float] = []
    fundamentals_ms: list[float] = []
    news_chars: list[int] = []
    fundamentals_chars: list[int] = []
    schema_chars = 0
    for step, minute in enumerate(calendar.session_minutes(SESSION)):
        ctx = _context(run, step, minute, research)
        tools = {t.name: t for t in build_tools(ctx, max_lookback=390,
                                                on_trade=lambda t: None)}
        if step == 0:
            schema_chars = sum(len(json.dumps(convert_to_openai_tool(tools[name])))
                               for name in ("news", "fundamentals"))
        for name, times, sizes, args in (
                ("news", news_ms, news_chars, {"symbol": SYMBOL, "lookback_hours": 24}),
                ("fundamentals", fundamentals_ms, fundamentals_chars, {"symbol": SYMBOL})):
            began = time.perf_counter()
            answer = tools[name].invoke(args)
            if "status" in answer:  # unavailable or rejected: not what is measured
                raise RuntimeError(f"{name} answered {answer}")
            times.append((time.perf_counter() - began) * 1000)
            sizes.append(len(json.dumps(answer)))
    return {"news_ms_p50": round(percentile(news_ms, 50), 3),
            "news_ms_p99": round(percentile(news_ms, 99), 3),
            "fundamentals_ms_p50": round(percentile(fundamentals_ms, 50), 3),
            "fundamentals_ms_p99": round(percentile(fundamentals_ms, 99), 3),
            "tool_schema_tokens": schema_chars // 4,
            "news_answer_tokens": int(statistics.median(news_chars)) // 4,
            "fundamentals_answer_tokens": int(statistics.median(fundamentals_chars)) // 4}


def fill(store: Store) -> None:
    """A month of news before the session, and three years of filings and actions."""
    last = SESSION
    days = [last - dt.timedelta(days=i) for i in range(DAYS)]
    items = [NewsItem(source=SOURCE, provider_id=f"n-{day}-{i}",
                      published_at=dt.datetime.combine(day, dt.time(0), dt.UTC)
                      + dt.timedelta(minutes=i * 24),
                      tickers=(SYMBOL, "MSFT") if i % 3 else (SYMBOL,),
                      title=f"{SYMBOL} headline {i} of {day}: supply chain, earnings, guidance",
                      summary="A summary of the article, a few sentences long. " * 6,
                      publisher="Benzinga", url=f"https://example.com/{day}/{i}")
             for day in days for i in range(ITEMS_PER_DAY)]
    store.save_news(SOURCE, SYMBOL, days, items)
    figures = {"income_statement": {"revenues": Decimal("94930000000"),
                                    "net_income_loss": Decimal("14736000000"),
                                    "diluted_earnings_per_share": Decimal("0.97")},
               "balance_sheet": {"assets": Decimal("331233000000"),
                                 "equity": Decimal("66758000000")},
               "cash_flow_statement": {"net_cash_flow": Decimal("-1000000000")}}
    filings = [Filing(source=SOURCE, provider_id=f"f-{q}", symbol=SYMBOL,
                      form="10-K" if q % 4 == 3 else "10-Q", fiscal_year=2022 + q // 4,
                      fiscal_period="FY" if q % 4 == 3 else f"Q{q % 4 + 1}",
                      period_end=dt.date(2022, 3, 31) + dt.timedelta(days=91 * q),
                      filing_date=dt.date(2022, 5, 1) + dt.timedelta(days=91 * q),
                      accepted_at=None, figures=figures)
               for q in range(12)]
    # What the cache holds for a decision on SESSION (core.research.cache.reach).
    filing_days = [SESSION + dt.timedelta(days=5 - i) for i in range(460)]
    store.save_filings(SOURCE, SYMBOL, filing_days, filings)
    actions = [CorporateAction(source=SOURCE, provider_id=f"d-{q}", symbol=SYMBOL,
                               kind=ActionKind.DIVIDEND,
                               ex_date=dt.date(2022, 5, 6) + dt.timedelta(days=91 * q),
                               announced_on=dt.date(2022, 4, 28) + dt.timedelta(days=91 * q),
                               details={"cash_amount": "0.25", "currency": "USD"})
               for q in range(12)]
    action_days = [SESSION + dt.timedelta(days=95 - i) for i in range(470)]
    store.save_actions(SOURCE, SYMBOL, action_days, actions)


def _context(run: Run, step: int, minute: dt.datetime, research: RunResearch
             ) -> StepContext:
    return StepContext(run=run, model=None, step=step, steps_total=390,  # type: ignore[arg-type]
                       bar_time=minute, history={SYMBOL: []},
                       portfolio=Portfolio(run_id=run.id, cash=Decimal(100_000)),
                       recent_trades=[], broker=None,  # type: ignore[arg-type]
                       research=research)
