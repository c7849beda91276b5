"""The ceiling `bench api` measures beside the API, in the same run: a bare FastAPI app
on the same server stack (uvicorn, uvloop, httptools, the same workers: api.workers) whose
async route answers GET /v1/runs/{id} with the very document the API answered. What the
framework alone does on these cores, now: the API's rate is reported as a share of it.

`python -m bench.bare_app PORT WORKERS` with TICKRUN_BENCH_RUN_DOC (the JSON document).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.workers import serve


def create_app() -> FastAPI:
    document: dict[str, Any] = json.loads(os.environ["TICKRUN_BENCH_RUN_DOC"])
    app = FastAPI()

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: int) -> dict[str, Any]:
        return document

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
