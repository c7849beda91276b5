-- The decider a run's runner resolved (the spec may leave it to the default), so a
-- result the controller computes from the ledger names it too.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS decider TEXT;
