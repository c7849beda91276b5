-- LLM spend (see the PostgreSQL migration). decided_at is written by the store (ISO
-- UTC, like every other time here); old rows get their run's last known time.
ALTER TABLE decisions ADD COLUMN tokens_cached INTEGER NOT NULL DEFAULT 0;
ALTER TABLE decisions ADD COLUMN decided_at TEXT;
UPDATE decisions SET decided_at = (SELECT COALESCE(r.finished_at, r.started_at, r.created_at)
                                   FROM runs r WHERE r.id = decisions.run_id);
CREATE INDEX IF NOT EXISTS decisions_decided_at_idx ON decisions (decided_at);
ALTER TABLE runs ADD COLUMN decider_reason TEXT;

CREATE TABLE IF NOT EXISTS user_limits (
    user_id        TEXT PRIMARY KEY,
    daily_cost_usd TEXT,
    updated_at     TEXT NOT NULL,
    updated_by     TEXT
);
