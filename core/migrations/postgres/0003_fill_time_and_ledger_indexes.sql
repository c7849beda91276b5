-- Trades and positions carry their fill time as well as their decision bar: under the
-- default next_open rule an order decided on one bar fills at the next bar's open, and
-- a reader must see the price next to the bar it existed on. A refusal never filled:
-- its filled_at stays NULL. Rows written before this column existed filled on their
-- decision bar as far as the ledger knows, so they take bar_time.
ALTER TABLE trades ADD COLUMN IF NOT EXISTS filled_at TIMESTAMPTZ;
UPDATE trades SET filled_at = bar_time WHERE status = 'filled' AND filled_at IS NULL;
ALTER TABLE trades DROP CONSTRAINT IF EXISTS trades_filled_at_check;
ALTER TABLE trades ADD CONSTRAINT trades_filled_at_check
    CHECK ((status = 'filled') = (filled_at IS NOT NULL));

ALTER TABLE positions ADD COLUMN IF NOT EXISTS filled_at TIMESTAMPTZ;
UPDATE positions SET filled_at = bar_time WHERE filled_at IS NULL;
ALTER TABLE positions ALTER COLUMN filled_at SET NOT NULL;

-- Bounded reads of one run's ledger: keyset pages and the newest trades walk
-- (run_id, id); a status filter is applied before the LIMIT on (run_id, status, id).
-- A step's own trades use the existing UNIQUE (run_id, step, seq).
CREATE INDEX IF NOT EXISTS trades_run_id_idx ON trades (run_id, id);
CREATE INDEX IF NOT EXISTS trades_run_status_idx ON trades (run_id, status, id);
