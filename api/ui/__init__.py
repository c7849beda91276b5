"""The web console under /ui: a user's view of their runs, from the same services and
event stream as /v1 (see README, "Web console").

Server-rendered (Jinja2, autoescaped) with a little plain JavaScript and a vendored,
pinned chart library: no build step, nothing to install in a browser.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from api.errors import PROBLEM_JSON
from api.ui import actions, pages
from api.ui.render import STATIC, page
from api.ui.session import LoginRequired

__all__ = ["mount"]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _problem(status: int, title: str, detail: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status,
                         "detail": detail}, status_code=status, media_type=PROBLEM_JSON,
                        headers=headers)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    challenge = {"WWW-Authenticate": 'Bearer realm="tickrun"'}
    if not _wants_html(request):
        return _problem(401, "Unauthorized", exc.detail, challenge)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return page(request, "login.html", status_code=401, headers=challenge,
                message=exc.detail, next=actions.safe_next(target))


async def _missing(request: Request, exc: Exception) -> Response:
    if not _wants_html(request):
        return _problem(404, "Not Found", f"{exc} not found", {})
    return page(request, "missing.html", status_code=404, what=str(exc))


def mount(app: FastAPI) -> None:
    """Add the console's routes, its static files and its error pages to the app."""
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(pages.PageMissing, _missing)
