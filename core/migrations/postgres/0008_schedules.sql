-- Schedules (issue 15): a run template fired by a cron rule in New York time on XNYS
-- sessions. Each due time of a schedule is one row of schedule_fires: its primary key
-- is what makes a fire happen once, whichever controller replica (or restart) gets
-- there, and the row says what came of it (a run, missed, or failed).
CREATE TABLE IF NOT EXISTS schedules (
    id               BIGSERIAL PRIMARY KEY,
    user_id          TEXT NOT NULL,
    model_id         BIGINT NOT NULL REFERENCES models (id) ON DELETE RESTRICT,
    name             TEXT,
    cron             TEXT NOT NULL,
    template         JSONB NOT NULL,
    make_up_seconds  INTEGER NOT NULL,
    paused           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Due times up to here are done (fired, missed or failed); the next are after it.
    fired_through    TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_user_id_idx ON schedules (user_id, id DESC);
CREATE INDEX IF NOT EXISTS schedules_active_idx ON schedules (id) WHERE NOT paused;

CREATE TABLE IF NOT EXISTS schedule_fires (
    schedule_id  BIGINT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    due_at       TIMESTAMPTZ NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('fired', 'missed', 'failed')),
    run_id       BIGINT REFERENCES runs (id) ON DELETE SET NULL,
    reason       TEXT,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, due_at)
);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS schedule_id BIGINT
    REFERENCES schedules (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS runs_schedule_id_idx ON runs (schedule_id)
    WHERE schedule_id IS NOT NULL;

-- Supabase: a user sees and changes only their own schedules (as 0002 does for runs).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth')
       AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
        ALTER TABLE schedules ENABLE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS schedules_owner ON schedules;
        CREATE POLICY schedules_owner ON schedules USING (user_id = auth.uid()::text)
            WITH CHECK (user_id = auth.uid()::text);
    END IF;
END
$$;
