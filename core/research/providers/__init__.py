"""Research providers: Massive (Polygon) and Alpaca through their official clients."""
