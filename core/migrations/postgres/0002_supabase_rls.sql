-- Row level security for Supabase: only where an `auth` schema (and auth.uid()) exists,
-- so a plain PostgreSQL gets the same tables without policies it cannot evaluate.
DO $$
DECLARE
    t TEXT;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth')
       AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
        FOREACH t IN ARRAY ARRAY['models', 'runs'] LOOP
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
            EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_owner', t);
            EXECUTE format(
                'CREATE POLICY %I ON %I USING (user_id = auth.uid()::text) '
                'WITH CHECK (user_id = auth.uid()::text)', t || '_owner', t);
        END LOOP;
        FOREACH t IN ARRAY ARRAY['portfolios', 'trades', 'positions', 'decisions'] LOOP
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
            EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_owner', t);
            EXECUTE format(
                'CREATE POLICY %I ON %I USING (EXISTS (SELECT 1 FROM runs r '
                'WHERE r.id = run_id AND r.user_id = auth.uid()::text))', t || '_owner', t);
        END LOOP;
    END IF;
END
$$;
