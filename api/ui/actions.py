"""What the console changes (POST forms, then a redirect): sign in and out, stop a run,
stop all (after a confirmation page), delete a run. Each calls the /v1 route's own
function, so a stop from the page is the API's stop."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ServicesDep
from api.routes import runs
from api.ui.pages import Id, owned_run
from api.ui.render import page
from api.ui.session import COOKIE, COOKIE_PATH, FormViewer, LoginRequired, Viewer, authenticate
from core.store import RunFilter

router = APIRouter(prefix="/ui", include_in_schema=False)
Next = Annotated[str, Form(max_length=2000)]


def safe_next(target: str | None) -> str:
    """Only a console path: never another site (`//evil`, `https://...`)."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui"


def back(target: str) -> RedirectResponse:
    return RedirectResponse(safe_next(target), status_code=303)


def _signed_in(request: Request, token: str, target: str) -> RedirectResponse:
    response = back(target)
    secure = request.url.scheme == "https" or request.headers.get(
        "x-forwarded-proto", "").split(",")[0].strip() == "https"
    response.set_cookie(COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=secure)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, svc: ServicesDep,
               token: Annotated[str | None, Query(max_length=8192)] = None,
               next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    """The sign-in form; with `TICKRUN_AUTH_MODE=dev`, `?token=` signs in at once (the
    link `tickrun dev` prints), and the token leaves the address bar by the redirect."""
    if token and svc.settings.auth_mode == "dev":
        authenticate(svc, token)
        return _signed_in(request, token, next or "/ui")
    return page(request, "login.html", message=None, next=safe_next(next))


@router.post("/login")
def login(request: Request, svc: ServicesDep,
          token: Annotated[str, Form(max_length=8192)], next: Next = "/ui") -> Response:
    try:
        authenticate(svc, token.strip())
    except LoginRequired:
        return page(request, "login.html", status_code=401, message="That token is not valid "
                    "(or has expired).", next=safe_next(next))
    return _signed_in(request, token.strip(), next)


@router.post("/logout")
def logout(who: FormViewer) -> Response:
    response = back("/ui/login")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


@router.post("/runs/{run_id}/stop")
def stop_run(run_id: Id, who: FormViewer, svc: ServicesDep, next: Next = "") -> Response:
    owned_run(svc, run_id, who.user_id)
    runs.stop_run(run_id, who, svc)
    return back(next or f"/ui/runs/{run_id}")


@router.post("/runs/{run_id}/delete")
async def delete_run(run_id: Id, who: FormViewer, svc: ServicesDep) -> Response:
    await asyncio.to_thread(owned_run, svc, run_id, who.user_id)  # else a 404 page
    await runs.delete_run(run_id, who, svc)  # stops it first, as DELETE /v1/runs/{id}
    return back("/ui")


@router.get("/stop-all", response_class=HTMLResponse)
def confirm_stop_all(request: Request, who: Viewer, svc: ServicesDep) -> HTMLResponse:
    """The kill switch asks first: the runs it would stop, and one button."""
    active = [r for r in svc.store.list_runs(who.user_id, RunFilter(limit=100_000))
              if not r.status.is_terminal]
    return page(request, "stop_all.html", active=active)


@router.post("/stop-all")
def stop_all(who: FormViewer, svc: ServicesDep) -> Response:
    stopped = runs.stop_all(who, svc)
    return back(f"/ui?stopped={len(stopped.stopping)}")
