-- tickrun schema for SQLite, the embedded default. Same tables as PostgreSQL; money is
-- stored as TEXT so Decimal values round-trip exactly.
CREATE TABLE IF NOT EXISTS models (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             TEXT NOT NULL,
    signature           TEXT NOT NULL,
    llm                 TEXT,
    custom_rules        TEXT,
    custom_instructions TEXT,
    parameters          TEXT NOT NULL DEFAULT '{}',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (user_id, signature)
);

CREATE TABLE IF NOT EXISTS runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           TEXT NOT NULL,
    model_id          INTEGER NOT NULL REFERENCES models (id) ON DELETE RESTRICT,
    spec              TEXT NOT NULL,
    mode              TEXT NOT NULL,
    symbols           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'queued',
    status_reason     TEXT,
    steps_total       INTEGER NOT NULL,
    steps_done        INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    admitted_at       TEXT,
    started_at        TEXT,
    finished_at       TEXT,
    stop_requested_at TEXT,
    result            TEXT,
    idempotency_key   TEXT,
    request_hash      TEXT,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS runs_user_id_idx ON runs (user_id, id DESC);
CREATE INDEX IF NOT EXISTS runs_status_idx ON runs (status, id);

CREATE TABLE IF NOT EXISTS portfolios (
    run_id   INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    cash     TEXT NOT NULL,
    holdings TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS trades (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    bar_time   TEXT NOT NULL,
    side       TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    quantity   TEXT NOT NULL,
    price      TEXT NOT NULL,
    fees       TEXT NOT NULL DEFAULT '0',
    status     TEXT NOT NULL,
    reason     TEXT,
    cash_after TEXT NOT NULL,
    reasoning  TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (run_id, step, seq)
);

CREATE TABLE IF NOT EXISTS positions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step      INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    bar_time  TEXT NOT NULL,
    action    TEXT NOT NULL,
    symbol    TEXT NOT NULL,
    cash      TEXT NOT NULL,
    holdings  TEXT NOT NULL,
    reasoning TEXT,
    UNIQUE (run_id, step, seq)
);

CREATE TABLE IF NOT EXISTS decisions (
    run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    bar_time   TEXT NOT NULL,
    action     TEXT NOT NULL,
    orders     TEXT NOT NULL DEFAULT '[]',
    reasoning  TEXT,
    outcome    TEXT NOT NULL,
    latency_ms REAL NOT NULL DEFAULT 0,
    tokens_in  INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost       TEXT,
    tool_calls TEXT NOT NULL DEFAULT '[]',
    error      TEXT,
    equity     TEXT,
    cash       TEXT,
    completed  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE IF NOT EXISTS stock_prices (
    symbol   TEXT NOT NULL,
    interval TEXT NOT NULL CHECK (interval IN ('1m', '1d')),
    bar_time TEXT NOT NULL,
    open     TEXT NOT NULL,
    high     TEXT NOT NULL,
    low      TEXT NOT NULL,
    close    TEXT NOT NULL,
    volume   TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (symbol, interval, bar_time)
);

-- The embedded event log: one row per event, ids increase per database.
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     INTEGER NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run_idx ON events (run_id, id);

CREATE TABLE IF NOT EXISTS run_progress (
    run_id  INTEGER PRIMARY KEY,
    data    TEXT NOT NULL
);
