-- A live run's fills at a broker: the price tickrun's fill rule would have given (see
-- the PostgreSQL migration 0011 of the same name). NULL for tickrun's own fills.
ALTER TABLE trades ADD COLUMN rule_price TEXT;
