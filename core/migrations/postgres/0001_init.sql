-- tickrun schema for PostgreSQL (Supabase-compatible: public schema, user ids as text
-- so that Supabase's auth.uid()::text and development ids both fit).
CREATE TABLE IF NOT EXISTS models (
    id                  BIGSERIAL PRIMARY KEY,
    user_id             TEXT NOT NULL,
    signature           TEXT NOT NULL,
    llm                 TEXT,
    custom_rules        TEXT,
    custom_instructions TEXT,
    parameters          JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, signature)
);

CREATE TABLE IF NOT EXISTS runs (
    id                BIGSERIAL PRIMARY KEY,
    user_id           TEXT NOT NULL,
    model_id          BIGINT NOT NULL REFERENCES models (id) ON DELETE RESTRICT,
    spec              JSONB NOT NULL,
    mode              TEXT NOT NULL,
    symbols           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'queued',
    status_reason     TEXT,
    steps_total       INTEGER NOT NULL,
    steps_done        INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    admitted_at       TIMESTAMPTZ,
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    stop_requested_at TIMESTAMPTZ,
    result            JSONB,
    idempotency_key   TEXT,
    request_hash      TEXT,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS runs_user_id_idx ON runs (user_id, id DESC);
CREATE INDEX IF NOT EXISTS runs_status_idx ON runs (status, id);

CREATE TABLE IF NOT EXISTS portfolios (
    run_id   BIGINT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    cash     NUMERIC(24, 6) NOT NULL,
    holdings JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS trades (
    id         BIGSERIAL PRIMARY KEY,
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    bar_time   TIMESTAMPTZ NOT NULL,
    side       TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    quantity   NUMERIC(24, 6) NOT NULL,
    price      NUMERIC(24, 6) NOT NULL,
    fees       NUMERIC(24, 6) NOT NULL DEFAULT 0,
    status     TEXT NOT NULL,
    reason     TEXT,
    cash_after NUMERIC(24, 6) NOT NULL,
    reasoning  TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (run_id, step, seq)
);

CREATE TABLE IF NOT EXISTS positions (
    id        BIGSERIAL PRIMARY KEY,
    run_id    BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step      INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    bar_time  TIMESTAMPTZ NOT NULL,
    action    TEXT NOT NULL,
    symbol    TEXT NOT NULL,
    cash      NUMERIC(24, 6) NOT NULL,
    holdings  JSONB NOT NULL,
    reasoning TEXT,
    UNIQUE (run_id, step, seq)
);

CREATE TABLE IF NOT EXISTS decisions (
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    bar_time   TIMESTAMPTZ NOT NULL,
    action     TEXT NOT NULL,
    orders     JSONB NOT NULL DEFAULT '[]'::jsonb,
    reasoning  TEXT,
    outcome    TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    tokens_in  INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost       NUMERIC(18, 8),
    tool_calls JSONB NOT NULL DEFAULT '[]'::jsonb,
    error      TEXT,
    equity     NUMERIC(24, 6),
    cash       NUMERIC(24, 6),
    completed  BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE IF NOT EXISTS stock_prices (
    symbol     TEXT NOT NULL,
    interval   TEXT NOT NULL CHECK (interval IN ('1m', '1d')),
    bar_time   TIMESTAMPTZ NOT NULL,
    open       NUMERIC(18, 6) NOT NULL,
    high       NUMERIC(18, 6) NOT NULL,
    low        NUMERIC(18, 6) NOT NULL,
    close      NUMERIC(18, 6) NOT NULL,
    volume     NUMERIC(24, 2) NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, bar_time)
);
