-- Schedules (see the PostgreSQL migration).
CREATE TABLE IF NOT EXISTS schedules (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          TEXT NOT NULL,
    model_id         INTEGER NOT NULL REFERENCES models (id) ON DELETE RESTRICT,
    name             TEXT,
    cron             TEXT NOT NULL,
    template         TEXT NOT NULL,
    make_up_seconds  INTEGER NOT NULL,
    paused           INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    fired_through    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_user_id_idx ON schedules (user_id, id DESC);
CREATE INDEX IF NOT EXISTS schedules_active_idx ON schedules (id) WHERE NOT paused;

CREATE TABLE IF NOT EXISTS schedule_fires (
    schedule_id  INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    due_at       TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('fired', 'missed', 'failed')),
    run_id       INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    reason       TEXT,
    recorded_at  TEXT NOT NULL,
    PRIMARY KEY (schedule_id, due_at)
);
ALTER TABLE runs ADD COLUMN schedule_id INTEGER REFERENCES schedules (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS runs_schedule_id_idx ON runs (schedule_id)
    WHERE schedule_id IS NOT NULL;
