"""`python -m bench api`: API latency under concurrency, and SSE fan-out.

- POST /v1/runs and GET /v1/runs/{id}: p50/p99 at 50 concurrent clients, against a real
  uvicorn process on PostgreSQL + Redis (no reconciler: the API's own cost);
- SSE: 1,000 concurrent subscribers of one run on that one process; events are appended
  to Redis with their send time, and each subscriber measures delivery latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from bench._support import emit, percentile

CLIENTS = 50
REQUESTS = 1500
SUBSCRIBERS = 1000
EVENTS = 40


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def _start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port",
         str(port), "--log-level", "warning", "--no-access-log"], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API did not start")


async def _latencies(client: httpx.AsyncClient, make: Any, total: int) -> list[float]:
    times: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            started = time.perf_counter()
            r = await make(i)
            r.raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return times


async def _requests(url: str, token: str) -> tuple[dict[str, Any], int]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        model = (await c.post("/v1/models", json={"signature": "bench"})).json()
        body = {"model_id": model["id"], "mode": "daily", "symbols": ["SPY"],
                "start": "2024-01-02", "end": "2024-06-28", "data": "synthetic"}
        started = time.perf_counter()
        posts = await _latencies(c, lambda i: c.post("/v1/runs", json=body), REQUESTS)
        post_rps = REQUESTS / (time.perf_counter() - started)
        first = (await c.get("/v1/runs", params={"limit": 1})).json()["items"][0]["id"]
        started = time.perf_counter()
        gets = await _latencies(c, lambda i: c.get(f"/v1/runs/{first - i % 500}"), REQUESTS)
        get_rps = REQUESTS / (time.perf_counter() - started)
    return ({"post_p50_ms": round(percentile(posts, 50), 2),
             "post_p99_ms": round(percentile(posts, 99), 2), "post_per_s": round(post_rps),
             "get_p50_ms": round(percentile(gets, 50), 2),
             "get_p99_ms": round(percentile(gets, 99), 2), "get_per_s": round(get_rps)},
            int(first))


async def _fan_out(url: str, token: str, run_id: int, append: Any) -> dict[str, Any]:
    latencies: list[float] = []
    connected = 0
    limits = httpx.Limits(max_connections=SUBSCRIBERS + 10)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        async def subscriber() -> int:
            nonlocal connected
            got = 0
            async with aconnect_sse(c, "GET", f"/v1/runs/{run_id}/events") as source:
                connected += 1
                async for sse in source.aiter_sse():
                    sent = json.loads(sse.data)["data"].get("sent")
                    if sent:
                        latencies.append((time.time() - sent) * 1000)
                        got += 1
                    if sse.event == "result":
                        return got
            return got

        tasks = [asyncio.create_task(subscriber()) for _ in range(SUBSCRIBERS)]
        while connected < SUBSCRIBERS:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        for i in range(EVENTS):
            await asyncio.to_thread(append, "progress", {"step": i, "sent": time.time()})
            await asyncio.sleep(0.05)
        await asyncio.to_thread(append, "result", {"status": "completed", "sent": time.time()})
        received = await asyncio.gather(*tasks)
    return {"sse_subscribers": SUBSCRIBERS, "sse_events": EVENTS + 1,
            "sse_delivered": sum(received), "sse_expected": SUBSCRIBERS * (EVENTS + 1),
            "sse_p50_ms": round(percentile(latencies, 50), 2),
            "sse_p99_ms": round(percentile(latencies, 99), 2)}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.eventlog import EventType
    from core.eventlog.redis_log import RedisEventLog
    from core.store import open_store
    from tests.apiserver import JWT_SECRET, token
    from tests.servers import free_port, start_postgres, start_redis

    _raise_fd_limit()
    pg, redis = start_postgres(), start_redis()
    api: subprocess.Popen[bytes] | None = None
    try:
        store = open_store(pg.url())
        store.migrate()
        store.close()
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")},
               "TICKRUN_DATABASE_URL": pg.url(), "TICKRUN_REDIS_URL": redis.url(),
               "TICKRUN_JWT_SECRET": JWT_SECRET, "TICKRUN_EMBEDDED_CONTROLLER": "false",
               "TICKRUN_LOCAL_LOG_DIR": tempfile.mkdtemp()}
        api = _start_api(env, port)
        url, user = f"http://127.0.0.1:{port}", token("bench-user", expires_in=7200)
        result, run_id = asyncio.run(_requests(url, user))
        log = RedisEventLog(redis.url())
        result.update(asyncio.run(_fan_out(
            url, user, run_id, lambda kind, data: log.append(run_id, EventType(kind), data))))
        result.update({"clients": CLIENTS, "requests": REQUESTS, "cpus": os.cpu_count()})
    finally:
        if api is not None:
            api.terminate()
            api.wait(30)
        pg.stop()
        redis.stop()
    emit(result)
    return 0
