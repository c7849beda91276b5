"""Live minute bars from the providers' real-time streams (Alpaca, Massive/Polygon).

base: the `LiveBarFeed` interface and its events; alpaca / polygon: the feeds over the
official clients' websockets; minutes: which session minutes are closed, and which the
provider never sent (gaps), by an injected clock.
"""
