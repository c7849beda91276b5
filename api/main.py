"""The FastAPI application: `uvicorn --factory api.main:create_app`.

With the local executor the reconciler runs inside this process (the embedded default,
`tickrun dev`); with Kubernetes it runs in the controller Deployment.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from api import errors, ui
from api.auth import Authenticator
from api.middleware import BodySizeLimit, RequestMetrics
from api.routes import batches, compare, data, events, health, models, runs, schedules, usage
from api.services import Services, run_ended
from api.settings import ApiProcessSettings
from api.sse import EventHub
from controller.factory import open_executor
from controller.reconciler import Limits, Reconciler
from core import calendar
from core.eventlog import open_event_log
from core.store import open_store

log = logging.getLogger(__name__)

DESCRIPTION = """Start AI trading agent runs, follow them live, stop them, read their
ledger. Every request needs `Authorization: Bearer <Supabase access token>`; errors are
`application/problem+json`."""


def build_services(settings: ApiProcessSettings) -> Services:
    api, core, ctl, spend = settings.api, settings.core, settings.ctl, settings.spend
    store = open_store(core.database_url.get_secret_value(), pool_size=core.db_pool_size)
    if api.migrate_on_start:
        store.migrate()
    event_log = open_event_log(core)
    executor = open_executor(ctl, core, settings.k8s)
    embedded = api.embedded_controller
    if embedded is None:
        embedded = ctl.executor == "local"
    reconciler = Reconciler(store, event_log, executor,
                            Limits(ctl.per_user_limit, ctl.global_limit,
                                   spend.user_daily_cost_usd),
                            lost_grace_seconds=ctl.lost_grace_seconds) if embedded else None
    hub = EventHub(event_log, run_ended(store), end_check_seconds=api.sse_end_check_seconds)
    return Services(settings=api, store=store, events=event_log, executor=executor, spend=spend,
                    auth=Authenticator(api), hub=hub, reconciler=reconciler,
                    resync_seconds=ctl.resync_seconds)


def _freeze_startup_heap() -> None:
    """What start-up made lives as long as the process (modules, pandas, the calendar,
    pydantic's schemas): out of the garbage collector's reach, its full collections no
    longer walk it. Those walks were the latency tail: bench api's p99 under 50
    connections, GET 72-145 -> 37-66 ms, a list page 165-235 -> 103-124 ms."""
    gc.collect()
    gc.freeze()


def create_app(services: Services | None = None, *,
               settings: ApiProcessSettings | None = None) -> FastAPI:
    """The app; services are built from TICKRUN_* settings at start-up unless given."""
    if services is None and settings is None:
        settings = ApiProcessSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or build_services(settings)  # type: ignore[arg-type]  # one is set
        app.state.services = svc
        # A few request threads (TICKRUN_REQUEST_THREADS): more only fight for the GIL,
        # which makes the latency tail long and unfair.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = svc.settings.request_threads
        # The exchange calendar takes a second or two to build: before the first request
        # (every POST checks its session), not during it.
        await anyio.to_thread.run_sync(calendar.exchange_calendar)
        await svc.open_reads()
        svc.start_controller(svc.resync_seconds)
        if services is None:  # a server process, not a test's app in its own process
            _freeze_startup_heap()
        try:
            yield
        finally:
            await svc.close_reads()
            svc.close()

    app = FastAPI(title="tickrun", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan, openapi_url="/openapi.json")
    errors.install(app)
    for router in (runs.router, events.router, models.router, data.router, usage.router,
                   batches.router, compare.router, schedules.router, health.router):
        app.include_router(router)
    ui.mount(app)  # the web console: /ui
    api = services.settings if services else settings.api  # type: ignore[union-attr]
    app.add_middleware(BodySizeLimit, max_bytes=api.max_body_bytes)
    app.add_middleware(RequestMetrics)
    return app
