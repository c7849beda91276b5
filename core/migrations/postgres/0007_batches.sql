-- Batches (issue 15): one request that makes the runs of a matrix (models x symbols x
-- dates or ranges), followed and compared as one. A run keeps its batch's id.
CREATE TABLE IF NOT EXISTS batches (
    id              BIGSERIAL PRIMARY KEY,
    user_id         TEXT NOT NULL,
    name            TEXT,
    template        JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    idempotency_key TEXT,
    request_hash    TEXT,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS batches_user_id_idx ON batches (user_id, id DESC);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS batch_id BIGINT
    REFERENCES batches (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS runs_batch_id_idx ON runs (batch_id) WHERE batch_id IS NOT NULL;

-- Supabase: a user sees and changes only their own batches (as 0002 does for runs).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth')
       AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
        ALTER TABLE batches ENABLE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS batches_owner ON batches;
        CREATE POLICY batches_owner ON batches USING (user_id = auth.uid()::text)
            WITH CHECK (user_id = auth.uid()::text);
    END IF;
END
$$;
