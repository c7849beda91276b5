-- Research items: news, filings, corporate actions and the days fetched (see the
-- PostgreSQL migration 0010 of the same name). Times are ISO text in UTC, days ISO
-- dates, JSON is text, numbers inside it are strings.
CREATE TABLE IF NOT EXISTS news_items (
    source       TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    published_at TEXT,
    learned_at   TEXT NOT NULL,
    title        TEXT NOT NULL,
    summary      TEXT,
    publisher    TEXT,
    url          TEXT,
    tickers      TEXT NOT NULL DEFAULT '[]',
    search_text  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source, provider_id)
);

CREATE TABLE IF NOT EXISTS news_tickers (
    source       TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    published_at TEXT,
    PRIMARY KEY (source, symbol, provider_id),
    FOREIGN KEY (source, provider_id) REFERENCES news_items (source, provider_id)
        ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS news_tickers_published_idx
    ON news_tickers (source, symbol, published_at);

CREATE TABLE IF NOT EXISTS filings (
    source        TEXT NOT NULL,
    provider_id   TEXT NOT NULL,
    symbol        TEXT NOT NULL,
    form          TEXT,
    fiscal_year   INTEGER,
    fiscal_period TEXT,
    period_end    TEXT,
    filing_date   TEXT NOT NULL,
    accepted_at   TEXT,
    known_at      TEXT NOT NULL,
    figures       TEXT NOT NULL DEFAULT '{}',
    url           TEXT,
    learned_at    TEXT NOT NULL,
    PRIMARY KEY (source, symbol, provider_id)
);
CREATE INDEX IF NOT EXISTS filings_known_idx ON filings (source, symbol, known_at);

CREATE TABLE IF NOT EXISTS corporate_actions (
    source       TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('split', 'dividend')),
    ex_date      TEXT NOT NULL,
    announced_on TEXT,
    known_at     TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}',
    learned_at   TEXT NOT NULL,
    PRIMARY KEY (source, symbol, provider_id)
);
CREATE INDEX IF NOT EXISTS corporate_actions_known_idx
    ON corporate_actions (source, symbol, known_at);

CREATE TABLE IF NOT EXISTS research_days (
    source     TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('news', 'filings', 'actions')),
    symbol     TEXT NOT NULL,
    day        TEXT NOT NULL,
    items      INTEGER NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (source, kind, symbol, day)
);
