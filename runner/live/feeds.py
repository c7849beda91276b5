"""The live bar feed of a run: its data source's stream, with the operator's keys."""

from __future__ import annotations

from core.errors import InvalidSpec
from core.marketdata.live.alpaca import AlpacaLiveFeed
from core.marketdata.live.base import LiveBarFeed
from core.marketdata.live.polygon import PolygonLiveFeed
from core.marketdata.settings import MarketDataSettings
from core.spec import DataSource, RunSpec


def live_feed_for(spec: RunSpec, settings: MarketDataSettings) -> LiveBarFeed:
    """The stream of the run's source (not started); InvalidSpec when it has no keys."""
    live = spec.live
    if live is None:
        raise InvalidSpec("not a live run")
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
