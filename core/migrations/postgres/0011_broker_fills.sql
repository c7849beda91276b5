-- A live run's fills at a broker (Alpaca paper): the price tickrun's own fill rule
-- would have given the same order, kept beside the broker's, so the result reports the
-- slippage. NULL for every fill of tickrun's own book.
ALTER TABLE trades ADD COLUMN IF NOT EXISTS rule_price NUMERIC(24, 6);
