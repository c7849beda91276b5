"""Errors as RFC 9457 problem details (application/problem+json), one shape for all."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import Conflict, InvalidSpec, NotFound, TemporaryError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ApiProblem(Exception):
    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem(status: int, detail: str, request: Request | None = None, *,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                            "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())),
               "msg": str(e.get("msg", "")).removeprefix("Value error, "),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "the request body is not valid JSON", request, errors=errors)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return problem(422, f"{where}: {first['msg']}" if where else str(first["msg"]), request,
                   errors=errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.detail, request, headers=exc.headers, **exc.extra)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, str(exc), request)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(409, str(exc), request)

    @app.exception_handler(InvalidSpec)
    async def _invalid(request: Request, exc: InvalidSpec) -> JSONResponse:
        return problem(422, str(exc), request)

    @app.exception_handler(TemporaryError)
    async def _temporary(request: Request, exc: TemporaryError) -> JSONResponse:
        return problem(503, str(exc), request, headers={"Retry-After": str(int(exc.delay))})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), request,
                       headers=getattr(exc, "headers", None))

    app.add_exception_handler(RequestValidationError, _validation)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal error; it has been logged", request)
