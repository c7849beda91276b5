-- LLM spend (issue 13): when each decision was made, so spend adds up by day; the
-- prompt tokens the provider served from its cache; why a run is played by another
-- decider than its model names; and operators' per-user daily spend limits.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS tokens_cached INTEGER NOT NULL DEFAULT 0;
-- Old rows get their run's last known time rather than the migration's.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS decided_at TIMESTAMPTZ;
UPDATE decisions d SET decided_at = COALESCE(r.finished_at, r.started_at, r.created_at)
    FROM runs r WHERE r.id = d.run_id AND d.decided_at IS NULL;
ALTER TABLE decisions ALTER COLUMN decided_at SET DEFAULT now();
ALTER TABLE decisions ALTER COLUMN decided_at SET NOT NULL;
CREATE INDEX IF NOT EXISTS decisions_decided_at_idx ON decisions (decided_at);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS decider_reason TEXT;

CREATE TABLE IF NOT EXISTS user_limits (
    user_id        TEXT PRIMARY KEY,
    daily_cost_usd NUMERIC(18, 8) CHECK (daily_cost_usd IS NULL OR daily_cost_usd >= 0),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by     TEXT
);

-- Supabase: a user may read their own limit; only the service role writes it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth')
       AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
        ALTER TABLE user_limits ENABLE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS user_limits_owner_reads ON user_limits;
        CREATE POLICY user_limits_owner_reads ON user_limits FOR SELECT
            USING (user_id = auth.uid()::text);
    END IF;
END
$$;
