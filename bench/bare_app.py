"""The ceiling `bench api` measures beside the API, in the same run: a bare FastAPI app
on the same server stack (uvicorn, uvloop, httptools, the same workers: api.workers) whose
async route answers GET /v1/runs/{id} with the very document the API answered. What the
framework alone does on these cores, now: the API's rate is reported as a share of it.

With TICKRUN_BENCH_READS=1 its routes first make the reads the API's routes make,
through the product's own read paths (a run by id, or a page of TICKRUN_BENCH_USER's
runs, on PostgreSQL's async pool; their progress on redis.asyncio: core.store.async_reads,
core.eventlog.async_progress, configured from the same TICKRUN_ settings), and answer the
prepared documents (GET /v1/runs?limit=50 answers TICKRUN_BENCH_RUN_PAGE): the ceiling of
a route that reads the store and the live view per request, without the API's routing,
auth, documents and middlewares.

`python -m bench.bare_app PORT WORKERS` with TICKRUN_BENCH_RUN_DOC (the JSON document).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Response

from api.workers import serve


def create_app() -> FastAPI:
    document: dict[str, Any] = json.loads(os.environ["TICKRUN_BENCH_RUN_DOC"])
    if os.environ.get("TICKRUN_BENCH_READS") == "1":
        return _reading_app(document)
    app = FastAPI()

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: int) -> dict[str, Any]:
        return document

    return app


def _reading_app(document: dict[str, Any]) -> FastAPI:
    """The bare app, its routes making the API routes' reads first, then answering the
    prepared documents' bytes as they are: nothing serialized, the most a route that
    reads can reach."""
    from core.eventlog.factory import open_event_log
    from core.settings import CoreSettings
    from core.store import open_store
    from core.store.runs import RunFilter

    settings = CoreSettings()
    store = open_store(settings.database_url.get_secret_value(), pool_size=1)
    runs, progress = store.async_reads(), open_event_log(settings).async_progress()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runs.open()
        yield
        await runs.close()
        await progress.close()
        store.close()

    app = FastAPI(lifespan=lifespan)
    one = json.dumps(document).encode()
    page = os.environ["TICKRUN_BENCH_RUN_PAGE"].encode()
    user = os.environ["TICKRUN_BENCH_USER"]

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: int) -> Response:
        await runs.get_run(run_id, user)
        await progress.get_progress_many([run_id])
        return Response(one, media_type="application/json")

    @app.get("/v1/runs")
    async def list_runs(limit: int = 50) -> Response:
        found = await runs.list_runs(user, RunFilter(limit=limit + 1))
        await progress.get_progress_many([r.id for r in found[:limit]
                                          if not r.status.is_terminal and r.attempts > 0])
        return Response(page, media_type="application/json")

    return app


def main(argv: list[str]) -> None:
    port, workers = int(argv[0]), int(argv[1])
    options: dict[str, Any] = {
        "app": "bench.bare_app:create_app", "factory": True, "host": "127.0.0.1",
        "port": port, "log_config": None, "access_log": False, "loop": "uvloop",
        "http": "httptools"}
    if workers == 1:
        uvicorn.run(**options)
    else:  # the API's own workers: each on a socket of its own
        sys.exit(serve(options, workers=workers, log_level="WARNING"))


if __name__ == "__main__":
    main(sys.argv[1:])
