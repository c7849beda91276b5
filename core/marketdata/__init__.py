"""Market data from providers (Polygon/Massive, Alpaca), cached in the store per source,
symbol, interval and session day, so a session replays the very same bars."""
