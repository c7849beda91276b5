-- Batches (see the PostgreSQL migration).
CREATE TABLE IF NOT EXISTS batches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    name            TEXT,
    template        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash    TEXT,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS batches_user_id_idx ON batches (user_id, id DESC);
ALTER TABLE runs ADD COLUMN batch_id INTEGER REFERENCES batches (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS runs_batch_id_idx ON runs (batch_id) WHERE batch_id IS NOT NULL;
