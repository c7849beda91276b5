-- Orders (see the PostgreSQL migration 0009 of the same name).
CREATE TABLE IF NOT EXISTS orders (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step          INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    bar_time      TEXT NOT NULL,
    active_from   INTEGER NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('buy', 'sell', 'short', 'cover')),
    symbol        TEXT NOT NULL,
    quantity      TEXT NOT NULL,
    type          TEXT NOT NULL CHECK (type IN ('market', 'limit', 'stop', 'stop_limit')),
    limit_price   TEXT,
    stop_price    TEXT,
    time_in_force TEXT NOT NULL DEFAULT 'day' CHECK (time_in_force IN ('day', 'gtc')),
    stop_loss     TEXT,
    origin        TEXT NOT NULL DEFAULT 'decider',
    parent_id     INTEGER,
    state         TEXT NOT NULL
        CHECK (state IN ('open', 'filled', 'cancelled', 'expired', 'refused')),
    reason        TEXT,
    triggered_at  TEXT,
    filled_at     TEXT,
    fill_price    TEXT,
    reasoning     TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (run_id, step, seq),
    CHECK ((state = 'filled') = (fill_price IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS orders_run_id_idx ON orders (run_id, id);
CREATE INDEX IF NOT EXISTS orders_open_idx ON orders (run_id, id) WHERE state = 'open';

CREATE TABLE IF NOT EXISTS order_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    order_id   INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    kind       TEXT NOT NULL
        CHECK (kind IN ('placed', 'triggered', 'filled', 'cancelled', 'expired', 'refused')),
    bar_time   TEXT,
    price      TEXT,
    reason     TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_events_run_id_idx ON order_events (run_id, id);
CREATE INDEX IF NOT EXISTS order_events_order_id_idx ON order_events (order_id, id);

ALTER TABLE trades ADD COLUMN order_id INTEGER REFERENCES orders (id);
CREATE UNIQUE INDEX IF NOT EXISTS trades_order_id_idx ON trades (order_id)
    WHERE order_id IS NOT NULL;

ALTER TABLE portfolios ADD COLUMN bars_done INTEGER NOT NULL DEFAULT -1;

ALTER TABLE decisions ADD COLUMN cancels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE decisions ADD COLUMN close_all INTEGER NOT NULL DEFAULT 0;
