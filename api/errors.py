"""Errors as RFC 9457 problem details (application/problem+json), one shape for all."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import Conflict, InvalidSpec, NotFound, TemporaryError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
Responses = dict[int | str, dict[str, Any]]


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: `body`, `query`, `path` or `header`, "
                                             "then the field path")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. missing or extra_forbidden")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details: the body of every error answer of this API."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="about:blank: the status code is the problem type")
    title: str = Field(description="The status code's reason phrase")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What is wrong, for a person to read")
    instance: str | None = Field(default=None, description="The request's path")
    errors: list[ValidationIssue] | None = Field(
        default=None, description="Request validation failures (400, 422): all of them")
    checks: dict[str, str] | None = Field(
        default=None, description="/readyz (503): each dependency and how it answered")


# Why each status happens, as the OpenAPI document tells it; a route may say it better.
WHY: dict[int, str] = {
    400: "The body is not JSON, or an event id is not one this server issued",
    401: "No bearer token, or one that is malformed, expired or not for this API",
    404: "No such resource, or it belongs to someone else",
    409: "The request conflicts with the resource's current state",
    413: "The request body is over the size limit",
    422: "A parameter or the body does not validate; `errors` lists each problem",
    503: "A dependency does not answer; retry later",
}
_HEADERS: dict[int, dict[str, Any]] = {401: {"WWW-Authenticate": {
    "description": "The Bearer challenge", "required": True, "schema": {"type": "string"}}}}
_REF = "#/components/schemas/{model}"


def problems(*statuses: int, why: Mapping[int, str] | None = None) -> Responses:
    """The `responses=` entries documenting error statuses as problem+json, so the
    OpenAPI document lists exactly the errors a route answers and their media type."""
    docs: Responses = {}
    for status in statuses:
        doc: dict[str, Any] = {
            "description": (why or {}).get(status, WHY.get(status, HTTPStatus(status).phrase)),
            "content": {PROBLEM_JSON: {"schema": {"$ref": _REF.format(model="ProblemDetails")}}}}
        if status in _HEADERS:
            doc["headers"] = _HEADERS[status]
        docs[status] = doc
    return docs


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
    return JSONResponse(problem_body(status, detail, request.url.path if request else None,
                                     **extra),
                        status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_body(status: int, detail: str, instance: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    """Built through ProblemDetails, so no answer strays from the documented shape."""
    body = ProblemDetails(type="about:blank", title=HTTPStatus(status).phrase, status=status,
                          detail=detail, instance=instance, **extra)
    return body.model_dump(mode="json", exclude_none=True)


_ENUM_REPR = re.compile(r"<\w+(?:\.\w+)+: ('[^']*'|-?\d+)>")


def _message(msg: object) -> str:
    # A discriminated union names its tags by repr (<Mode.DAILY: 'daily'>); a client
    # needs only the value it can send ('daily').
    return _ENUM_REPR.sub(r"\1", str(msg)).removeprefix("Value error, ")


def first_problem(exc: ValidationError) -> str:
    """A spec the route built that does not validate, in one phrase (its first error)."""
    errors = exc.errors()
    return _message(errors[0].get("msg", exc)) if errors else str(exc)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": _message(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "the request body is not valid JSON", request, errors=errors)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return problem(422, f"{where}: {first['msg']}" if where else str(first["msg"]), request,
                   errors=errors)


def allowed_methods(request: Request) -> str | None:
    """The methods the OpenAPI document gives the requested resource. Starlette names
    only those of the first route whose path matched, though GET and DELETE
    /v1/runs/{run_id} are two routes. A literal path (/v1/runs/stop-all) is a resource of
    its own, not a value of {run_id}."""
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    found = [t for t in paths if _matches(t, request.url.path)]
    found = [t for t in found if "{" not in t] or found
    methods = {method.upper() for template in found for method in paths[template]}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods)) or None


def _matches(template: str, path: str) -> bool:
    want, got = template.split("/"), path.split("/")
    return len(want) == len(got) and all(
        w == g or (w.startswith("{") and g != "") for w, g in zip(want, got, strict=True))


def document(app: FastAPI) -> None:
    """Add ProblemDetails to the OpenAPI components: routes reference it for their
    problem+json answers, which FastAPI cannot collect itself (it would file the model
    under application/json)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # built once, then FastAPI's cached document
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ProblemDetails" not in components:
            models = ProblemDetails.model_json_schema(ref_template=_REF, mode="serialization")
            components.update({"ProblemDetails": models, **models.pop("$defs", {})})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    document(app)

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
        headers = dict(getattr(exc, "headers", None) or {})
        allow = allowed_methods(request) if exc.status_code == 405 else None
        if allow is not None:
            headers["Allow"] = allow
        return problem(exc.status_code, str(exc.detail), request, headers=headers)

    app.add_exception_handler(RequestValidationError, _validation)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal error; it has been logged", request)
