-- Orders (issue 16): the run's order book. Every order a decider makes is a row (market
-- ones too, filled or refused at once), and so is every order the engine places (a
-- stop-loss, a margin call's covers, an intraday run's flat-at-close); limit, stop and
-- stop-limit orders rest here, `open`, until a later bar fills them, they are
-- cancelled or they expire. Keyed by (run, step, seq) like trades: a replayed step
-- finds the order it placed. `active_from` is the first step whose bar it may fill on.
CREATE TABLE IF NOT EXISTS orders (
    id            BIGSERIAL PRIMARY KEY,
    run_id        BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step          INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    bar_time      TIMESTAMPTZ NOT NULL,
    active_from   INTEGER NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('buy', 'sell', 'short', 'cover')),
    symbol        TEXT NOT NULL,
    quantity      NUMERIC(24, 6) NOT NULL,
    type          TEXT NOT NULL CHECK (type IN ('market', 'limit', 'stop', 'stop_limit')),
    limit_price   NUMERIC(24, 6),
    stop_price    NUMERIC(24, 6),
    time_in_force TEXT NOT NULL DEFAULT 'day' CHECK (time_in_force IN ('day', 'gtc')),
    stop_loss     NUMERIC(24, 6),
    origin        TEXT NOT NULL DEFAULT 'decider',
    parent_id     BIGINT,
    state         TEXT NOT NULL
        CHECK (state IN ('open', 'filled', 'cancelled', 'expired', 'refused')),
    reason        TEXT,
    triggered_at  TIMESTAMPTZ,
    filled_at     TIMESTAMPTZ,
    fill_price    NUMERIC(24, 6),
    reasoning     TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (run_id, step, seq),
    CHECK ((state = 'filled') = (fill_price IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS orders_run_id_idx ON orders (run_id, id);
-- The book a step reads: a run's open orders only, however many it ever placed.
CREATE INDEX IF NOT EXISTS orders_open_idx ON orders (run_id, id) WHERE state = 'open';

-- Every state change of an order (placed, triggered, filled, cancelled, expired,
-- refused), written in the transaction of the change itself.
CREATE TABLE IF NOT EXISTS order_events (
    id         BIGSERIAL PRIMARY KEY,
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    order_id   BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    kind       TEXT NOT NULL
        CHECK (kind IN ('placed', 'triggered', 'filled', 'cancelled', 'expired', 'refused')),
    bar_time   TIMESTAMPTZ,
    price      NUMERIC(24, 6),
    reason     TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS order_events_run_id_idx ON order_events (run_id, id);
CREATE INDEX IF NOT EXISTS order_events_order_id_idx ON order_events (order_id, id);

-- A trade fills one order, once: a replayed bar cannot fill a resting order twice.
ALTER TABLE trades ADD COLUMN IF NOT EXISTS order_id BIGINT REFERENCES orders (id);
CREATE UNIQUE INDEX IF NOT EXISTS trades_order_id_idx ON trades (order_id)
    WHERE order_id IS NOT NULL;

-- The last step whose bar the run's resting orders (and its margin) were settled on,
-- under the portfolio's lock: a step played again after a crash settles its bar once.
ALTER TABLE portfolios ADD COLUMN IF NOT EXISTS bars_done INTEGER NOT NULL DEFAULT -1;

-- What a decision did besides its orders, so a replayed step does it again.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS cancels JSONB NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS close_all BOOLEAN NOT NULL DEFAULT false;

-- Supabase: a user sees only their own runs' orders (as 0002 does for trades).
DO $$
DECLARE
    t TEXT;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth')
       AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
        FOREACH t IN ARRAY ARRAY['orders', 'order_events'] LOOP
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
            EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_owner', t);
            EXECUTE format(
                'CREATE POLICY %I ON %I USING (EXISTS (SELECT 1 FROM runs r '
                'WHERE r.id = run_id AND r.user_id = auth.uid()::text))', t || '_owner', t);
        END LOOP;
    END IF;
END
$$;
