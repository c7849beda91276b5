-- Research items: news, filings and corporate actions, each stored once as its provider
-- sent it, with the instant the market could first know it (published_at / known_at)
-- and the time tickrun learned of it (learned_at: the first save; a later save of the
-- same item leaves the row as it is). A decision reads only rows known at or before
-- the end of its bar (core.research.items, core.research.pit). Public market data, as
-- price_days: no owner column, no RLS policy.

-- News: one row per (source, provider id); `published_at` NULL is stored (so an audit
-- can count it) and never answered. `tickers` is the provider's tagging (a JSON list);
-- `search_text` is the title and summary casefolded at write time, so a word search is
-- one LIKE that answers the same on PostgreSQL and SQLite.
CREATE TABLE IF NOT EXISTS news_items (
    source       TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    published_at TIMESTAMPTZ,
    learned_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    title        TEXT NOT NULL,
    summary      TEXT,
    publisher    TEXT,
    url          TEXT,
    tickers      JSONB NOT NULL DEFAULT '[]'::jsonb,
    search_text  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source, provider_id)
);

-- Which symbols an item is about (its tickers, and the symbol it was fetched for), with
-- its publication time copied, so "AAPL's news up to T" is one index range.
CREATE TABLE IF NOT EXISTS news_tickers (
    source       TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    published_at TIMESTAMPTZ,
    PRIMARY KEY (source, symbol, provider_id),
    FOREIGN KEY (source, provider_id) REFERENCES news_items (source, provider_id)
        ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS news_tickers_published_idx
    ON news_tickers (source, symbol, published_at);

-- Filings: one report's figures ({statement: {line: "decimal"}}, numbers as JSON strings
-- so they come back exact). Keyed per symbol too: one company's report may be fetched
-- for each of its share classes (GOOG, GOOGL) under the same provider id.
CREATE TABLE IF NOT EXISTS filings (
    source        TEXT NOT NULL,
    provider_id   TEXT NOT NULL,
    symbol        TEXT NOT NULL,
    form          TEXT,
    fiscal_year   INTEGER,
    fiscal_period TEXT,
    period_end    DATE,
    filing_date   DATE NOT NULL,
    accepted_at   TIMESTAMPTZ,
    known_at      TIMESTAMPTZ NOT NULL,
    figures       JSONB NOT NULL DEFAULT '{}'::jsonb,
    url           TEXT,
    learned_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, symbol, provider_id)
);
CREATE INDEX IF NOT EXISTS filings_known_idx ON filings (source, symbol, known_at);

-- Splits and dividends; `details` holds their numbers as JSON strings (exact).
CREATE TABLE IF NOT EXISTS corporate_actions (
    source       TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('split', 'dividend')),
    ex_date      DATE NOT NULL,
    announced_on DATE,
    known_at     TIMESTAMPTZ NOT NULL,
    details      JSONB NOT NULL DEFAULT '{}'::jsonb,
    learned_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, symbol, provider_id)
);
CREATE INDEX IF NOT EXISTS corporate_actions_known_idx
    ON corporate_actions (source, symbol, known_at);

-- A (source, kind, symbol, New York day) window is fetched once: its row is written in
-- the transaction that stores what the provider sent for it (`items`: how many of them
-- are dated that day). A day that is not over yet is never marked.
CREATE TABLE IF NOT EXISTS research_days (
    source     TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('news', 'filings', 'actions')),
    symbol     TEXT NOT NULL,
    day        DATE NOT NULL,
    items      INTEGER NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, kind, symbol, day)
);
