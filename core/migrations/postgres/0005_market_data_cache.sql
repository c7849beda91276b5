-- Bars cached per source: the same symbol, interval and minute may come from polygon,
-- alpaca, or the operator's own `table` rows, and a run replays the source it names.
ALTER TABLE stock_prices ADD COLUMN IF NOT EXISTS source TEXT NOT NULL DEFAULT 'table';
ALTER TABLE stock_prices DROP CONSTRAINT IF EXISTS stock_prices_pkey;
ALTER TABLE stock_prices ADD PRIMARY KEY (source, symbol, interval, bar_time);

-- A session day is cached once its bars were fetched and stored (a day may have
-- minutes with no trade, so "has rows" is not "was fetched"). Public market data: no
-- owner, no RLS policy.
CREATE TABLE IF NOT EXISTS price_days (
    source     TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    interval   TEXT NOT NULL CHECK (interval IN ('1m', '1d')),
    day        DATE NOT NULL,
    bars       INTEGER NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, symbol, interval, day)
);
