"""Live minute bars from the providers' real-time streams (Alpaca, Massive/Polygon).

base: the `LiveBarFeed` interface and its events; alpaca / polygon: the feeds over the
official clients' websockets; polling: the feed that polls a provider's REST bars
instead (TICKRUN_LIVE_BARS=poll); minutes: which session minutes are closed, and which the
provider never sent (gaps), by an injected clock.
"""
