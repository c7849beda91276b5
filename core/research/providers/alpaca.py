"""News from Alpaca's news API through its official client, `alpaca-py`.

One call is one `NewsClient.get_news` (GET {data url}/v1beta1/news?symbols=...): the
client follows `next_page_token` itself, 50 articles a page (the API's maximum, fixed by
the client). Each call builds its own client so that its requests session carries that
call's retry policy and deadline, as for bars (core.marketdata.providers.alpaca's
`session`: the client's own fixed-wait 429 loop off, urllib3's `DeadlineRetry` mounted
instead, and the same mapping of failures).

What the client does on its own, and how it is steered here:
- `NewsRequest.limit` is not a page size: the client stops once it has that many
  articles over all pages (`_get_marketdata`). It is left unset, so every page is read;
- the request's `end` is inclusive: it is the next New York midnight, and an article
  stamped exactly then (the next day's) is dropped here;
- `raw_data=True`: the articles are read from the JSON (id, headline, summary, source,
  url, symbols, created_at), so one odd article (a missing field the `News` model
  requires) does not lose the whole window.
"""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

from pydantic import SecretStr

with warnings.catch_warnings():
    # as in core.marketdata.providers.alpaca: alpaca.data imports websockets' legacy client
    warnings.filterwarnings("ignore", message="websockets.legacy is deprecated",
                            category=DeprecationWarning)
    from alpaca.data.historical.news import NewsClient
    from alpaca.data.requests import NewsRequest

from core.errors import ProviderUnavailable
from core.marketdata.providers.alpaca import KEY_SETTINGS, session
from core.research.items import NewsItem
from core.research.providers.base import (
    ResearchProvider,
    news_in_window,
    news_window,
    parse_instant,
)


class AlpacaResearch(ResearchProvider):
    source = "alpaca"
    serves = frozenset({"news"})

    def __init__(self, key_id: SecretStr, secret_key: SecretStr, data_url: str,
                 deadline_seconds: float) -> None:
        self._key_id = key_id
        self._secret_key = secret_key
        self._data_url = data_url.rstrip("/")
        self._deadline_seconds = deadline_seconds

    def __repr__(self) -> str:
        return f"AlpacaResearch(data_url={self._data_url!r})"

    def news(self, symbol: str, first: dt.date, last: dt.date) -> list[NewsItem]:
        what = f"{symbol} news {first}..{last}"
        start, end = news_window(first, last)
        request = NewsRequest(symbols=symbol, start=start, end=end, sort="asc",
                              include_content=False)
        client = NewsClient(
            api_key=self._key_id.get_secret_value(),
            secret_key=self._secret_key.get_secret_value(),
            url_override=self._data_url, raw_data=True)
        with session(client, what, self._deadline_seconds, (self._key_id, self._secret_key),
                     f"check {KEY_SETTINGS}, and that the account's plan includes news"):
            raw = client.get_news(request)
        if not isinstance(raw, dict):  # raw_data=True: {"news": [article, ...]}
            raise ProviderUnavailable(f"alpaca's client returned {type(raw).__name__}")
        articles = raw.get("news") or []
        return news_in_window([_news(article, what) for article in articles], start, end)


def _news(article: Any, what: str) -> NewsItem:
    if not isinstance(article, dict) or article.get("id") in (None, ""):
        raise ProviderUnavailable(f"alpaca sent a malformed article for {what}: "
                                  f"{str(article)[:200]!r}")
    symbols = article.get("symbols")
    return NewsItem(
        source="alpaca", provider_id=str(article["id"]),
        published_at=parse_instant(article.get("created_at")),
        tickers=tuple(str(s) for s in symbols) if isinstance(symbols, list) else (),
        title=str(article.get("headline") or ""),
        summary=_text(article.get("summary")), publisher=_text(article.get("source")),
        url=_text(article.get("url")))


def _text(value: object) -> str | None:
    """A non-blank string, else None (Alpaca sends "" for an absent summary)."""
    return value if isinstance(value, str) and value.strip() else None
