"""`python -m bench data`: the market data bar cache against a fake Massive/Polygon server.

The fake (tests/fakes/polygon_server.py, the official `massive` client speaking to it)
runs in its own process, so its bar generation does not share this process's GIL.
For one 390-minute session and for a 20-year daily range (5,033 sessions), on
PostgreSQL and on SQLite:

- `provider_fetch_s`: the provider's fetch alone (HTTP, paging, parsing to Decimal);
- `fetch_cache_s`: BarCache.fill into an empty cache (the fetch, session filtering, the
  insert), and the provider requests it made;
- `*_cpu_s`: this process's CPU time in those two: tickrun's own cost, without the
  fake's time to generate its answer (its wall time is mostly the fake's);
- `load_s`: BarCache.load of the same days from the cache;
- `cached_fill_s`: a second fill of the same days (the cache check only; no request).

Each figure is the median of REPEATS symbols (every symbol is fetched once per store).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench._support import emit
from core import calendar
from core.marketdata.cache import BarCache
from core.marketdata.providers import BarProvider, Interval
from core.marketdata.settings import MarketDataSettings
from core.store import Store, open_store
from core.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-polygon-key"
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ", "IWM", "GOOG", "NVDA")
REPEATS = 3  # symbols per case: one warms the fake, REPEATS are measured, per store
SESSION = dt.date(2025, 3, 3)
DAILY = (dt.date(2005, 1, 3), dt.date(2024, 12, 31))

_FAKE = """
import sys
from tests.fakes.polygon_server import FakePolygon
fake = FakePolygon(sys.argv[1], symbols=sys.argv[2].split(",")).start()
print(fake.url, flush=True)
for _ in sys.stdin:
    print(fake.request_count, flush=True)
"""


class FakeProcess:
    """The fake Polygon server in a child process; `requests()` asks it for its count."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-c", _FAKE, KEY, ",".join(SYMBOLS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=REPO)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.close()
            raise RuntimeError("the fake Polygon server did not start")

    def requests(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


CPU: dict[str, float] = {}  # the process time of the last _timed call


def _timed(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    began, cpu = time.perf_counter(), time.process_time()
    value = call(*args)
    CPU["last"] = time.process_time() - cpu
    return time.perf_counter() - began, value


def _load(cache: BarCache, symbol: str, interval: Interval, days: list[dt.date]) -> list[Any]:
    return list(cache.load(symbol, interval, days))


def measure(fake: FakeProcess, provider: BarProvider, stores: dict[str, Store], label: str,
            interval: Interval, days: list[dt.date], symbols: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    warm, measured = symbols[0], symbols[1:]
    provider.fetch(warm, interval, days[0], days[-1])  # both processes' caches warm
    samples: dict[str, list[float]] = {}

    def sample(key: str, seconds: float) -> None:
        samples.setdefault(f"{label}_{key}", []).append(seconds)

    for symbol in measured:
        before = fake.requests()
        seconds, bars = _timed(provider.fetch, symbol, interval, days[0], days[-1])
        sample("provider_fetch_s", seconds)
        sample("provider_fetch_cpu_s", CPU["last"])
        out[f"{label}_provider_requests"] = fake.requests() - before
        out[f"{label}_provider_bars"] = len(bars)  # extended hours included
    for name, store in stores.items():
        cache = BarCache(store, provider.source, provider)
        for symbol in measured:
            before = fake.requests()
            seconds, fetched = _timed(cache.fill, symbol, interval, days)
            assert fetched == len(days)
            sample(f"{name}_fetch_cache_s", seconds)
            sample(f"{name}_fetch_cache_cpu_s", CPU["last"])
            out[f"{label}_{name}_fill_requests"] = fake.requests() - before
            seconds, loaded = _timed(_load, cache, symbol, interval, days)
            sample(f"{name}_load_s", seconds)
            out[f"{label}_bars"] = len(loaded)
            before = fake.requests()
            seconds, again = _timed(cache.fill, symbol, interval, days)
            assert again == 0
            sample(f"{name}_cached_fill_s", seconds)
            out[f"{label}_{name}_second_fill_requests"] = fake.requests() - before
    out.update({key: round(statistics.median(values), 4) for key, values in samples.items()})
    return dict(sorted(out.items()))


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO))
    from core.marketdata.providers.factory import build_provider
    from tests.servers import start_postgres

    pg = start_postgres()
    fake = FakeProcess()
    tmp = Path(tempfile.mkdtemp(prefix="tickrun-bench-data-"))
    stores: dict[str, Store] = {}
    try:
        stores["postgres"] = open_store(pg.url(), pool_size=2)
        stores["sqlite"] = SqliteStore(tmp / "cache.db")
        for store in stores.values():
            store.migrate()
        settings = MarketDataSettings(polygon_api_key=SecretStr(KEY), polygon_base_url=fake.url,
                                      alpaca_api_key_id=None, alpaca_api_secret_key=None)
        provider = build_provider("polygon", settings)
        symbols = list(SYMBOLS)
        result: dict[str, Any] = {"bench": "data"}
        result.update(measure(fake, provider, stores, "session_390m", Interval.MINUTE,
                              [SESSION], symbols[:REPEATS + 1]))
        daily = calendar.sessions_in_range(*DAILY)
        result["daily_20y_sessions"] = len(daily)
        result.update(measure(fake, provider, stores, "daily_20y", Interval.DAY, daily,
                              symbols[-(REPEATS + 1):]))
        for key, value in result.items():
            if key != "bench":
                print(f"{key:42} {value}", file=sys.stderr)
        emit(result)
    finally:
        for store in stores.values():
            store.close()
        fake.close()
        pg.stop()
    return 0
