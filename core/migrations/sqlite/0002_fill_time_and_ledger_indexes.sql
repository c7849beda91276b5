-- Trades and positions carry their fill time as well as their decision bar (see the
-- PostgreSQL migration 0003 of the same name). A refusal's filled_at stays NULL; rows
-- written before this column existed take bar_time. SQLite cannot add the NOT NULL or
-- the CHECK that PostgreSQL has to an existing table; the store always writes it.
ALTER TABLE trades ADD COLUMN filled_at TEXT;
UPDATE trades SET filled_at = bar_time WHERE status = 'filled' AND filled_at IS NULL;

ALTER TABLE positions ADD COLUMN filled_at TEXT;
UPDATE positions SET filled_at = bar_time WHERE filled_at IS NULL;

-- Bounded reads of one run's ledger: keyset pages and the newest trades walk
-- (run_id, id); a status filter is applied before the LIMIT on (run_id, status, id).
CREATE INDEX IF NOT EXISTS trades_run_id_idx ON trades (run_id, id);
CREATE INDEX IF NOT EXISTS trades_run_status_idx ON trades (run_id, status, id);
