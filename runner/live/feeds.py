"""The live bar feed of a run: its data source's stream, with the operator's keys, or
(TICKRUN_LIVE_BARS=poll) its REST bars endpoint polled on the run's clock."""

from __future__ import annotations

from core.errors import InvalidSpec, ProviderRefused
from core.marketdata.live.alpaca import AlpacaLiveFeed
from core.marketdata.live.base import LiveBarFeed
from core.marketdata.live.polling import PollingFeed, poll_deadline
from core.marketdata.live.polygon import PolygonLiveFeed
from core.marketdata.providers.factory import build_provider
from core.marketdata.settings import MarketDataSettings, ProviderName
from core.spec import DataSource, RunSpec
from runner.live.clock import LiveClock


def live_feed_for(spec: RunSpec, settings: MarketDataSettings,
                  clock: LiveClock | None = None) -> LiveBarFeed:
    """The stream of the run's source (not started), or its polled REST bars when
    settings.live_bars is "poll" (on `clock`, default the wall clock); InvalidSpec when
    it has no keys."""
    live = spec.live
    if live is None:
        raise InvalidSpec("not a live run")
    if settings.live_bars == "poll":
        return _polling_feed(spec, settings, clock or LiveClock())
    if spec.data is DataSource.ALPACA:
        key, secret = settings.alpaca_api_key_id, settings.alpaca_api_secret_key
        if key is None or secret is None:
            raise InvalidSpec("a live run on alpaca needs TICKRUN_ALPACA_API_KEY_ID and "
                              "TICKRUN_ALPACA_API_SECRET_KEY")
        return AlpacaLiveFeed(key, secret, feed=live.feed.value,
                              url=settings.alpaca_stream_url)
    if spec.data is DataSource.POLYGON:
        if settings.polygon_api_key is None:
            raise InvalidSpec("a live run on polygon needs TICKRUN_POLYGON_API_KEY")
        return PolygonLiveFeed(settings.polygon_api_key, feed=settings.polygon_stream_host,
                               secure=settings.polygon_stream_secure)
    raise InvalidSpec(f"a live run streams from polygon or alpaca, not {spec.data}")


def _polling_feed(spec: RunSpec, settings: MarketDataSettings,
                  clock: LiveClock) -> PollingFeed:
    if spec.data not in (DataSource.ALPACA, DataSource.POLYGON):
        raise InvalidSpec(f"a live run polls polygon or alpaca, not {spec.data}")
    name: ProviderName = "alpaca" if spec.data is DataSource.ALPACA else "polygon"
    interval = settings.live_poll_seconds
    deadline = poll_deadline(clock.wall_seconds(interval),
                             settings.market_data_fetch_deadline_seconds)
    polled = settings.model_copy(update={"market_data_fetch_deadline_seconds": deadline})
    try:
        provider = build_provider(name, polled)
    except ProviderRefused as exc:  # no keys: the run's spec cannot be played here
        raise InvalidSpec(f"a live run on {name} polls its bars: {exc}") from None
    return PollingFeed(provider, interval=interval, clock=clock,
                       wall_seconds=clock.wall_seconds)
