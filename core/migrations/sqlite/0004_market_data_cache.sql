-- Bars cached per source (see the PostgreSQL migration); SQLite cannot change a
-- primary key in place, so the table is rebuilt with its rows.
CREATE TABLE stock_prices_new (
    source   TEXT NOT NULL DEFAULT 'table',
    symbol   TEXT NOT NULL,
    interval TEXT NOT NULL CHECK (interval IN ('1m', '1d')),
    bar_time TEXT NOT NULL,
    open     TEXT NOT NULL,
    high     TEXT NOT NULL,
    low      TEXT NOT NULL,
    close    TEXT NOT NULL,
    volume   TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (source, symbol, interval, bar_time)
);
INSERT INTO stock_prices_new (source, symbol, interval, bar_time, open, high, low, close,
                              volume)
    SELECT 'table', symbol, interval, bar_time, open, high, low, close, volume
    FROM stock_prices;
DROP TABLE stock_prices;
ALTER TABLE stock_prices_new RENAME TO stock_prices;

CREATE TABLE IF NOT EXISTS price_days (
    source     TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    interval   TEXT NOT NULL CHECK (interval IN ('1m', '1d')),
    day        TEXT NOT NULL,
    bars       INTEGER NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (source, symbol, interval, day)
);
