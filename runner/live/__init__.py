"""Live runs: a session played as it happens, bar by bar from a provider's stream
(runner.live.session), on the sim book or an Alpaca paper account."""
