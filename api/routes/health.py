"""Probes and metrics: /healthz (the process answers), /readyz (its dependencies do)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.deps import ServicesDep
from api.errors import problem, problems

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


@router.get("/healthz", response_model=Alive)
async def healthz() -> dict[str, str]:
    """On the event loop: the process answers even while every request thread is busy
    (a provider fetch, a slow store), so the liveness probe never restarts it for that."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready,
            responses=problems(503, why={503: "A dependency does not answer; `checks` says "
                                              "which"}))
async def readyz(request: Request, svc: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    for name, ping in (("store", svc.store.ping), ("event_log", svc.events.ping)):
        try:
            await asyncio.wait_for(asyncio.to_thread(ping), timeout=3)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return Response('{"status":"ready"}', media_type="application/json")
    return problem(503, "not ready", request, checks=checks)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
