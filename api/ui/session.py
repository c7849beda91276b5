"""Who is looking at the console: the API's own authentication, carried by a cookie.

A browser cannot put `Authorization: Bearer` on a page load or an EventSource, so the
console takes the same token in an HttpOnly cookie (`tickrun_session`, path /ui,
SameSite=Strict), set by POST /ui/login from a token the user pastes (a Supabase
session's access token on a cluster) or, with `TICKRUN_AUTH_MODE=dev` only, by the link
`tickrun dev` prints (`/ui/login?token=...`). Every request re-checks the token with
the API's Authenticator, exactly as /v1 does: nothing else is trusted, and an expired
JWT sends the user back to the login page. An `Authorization` header works too.

Forms that change something carry a CSRF field derived from the session token (an
HMAC no other site can compute); with SameSite=Strict that is belt and braces.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Form, Request

from api.auth import Caller
from api.deps import services
from api.errors import ApiProblem
from api.services import Services

COOKIE = "tickrun_session"
COOKIE_PATH = "/ui"


class LoginRequired(Exception):
    """No valid token: a page answers 401 with the login form."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def token_of(request: Request) -> tuple[str | None, bool]:
    """The token and whether it came from the cookie (only then is CSRF a concern)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def authenticate(svc: Services, token: str | None) -> Caller:
    """The API's Authenticator on the token; LoginRequired when it refuses."""
    if not token:
        raise LoginRequired("sign in to see your runs")
    try:
        return svc.auth.authenticate(f"Bearer {token}")
    except ApiProblem as exc:
        raise LoginRequired("your session is invalid or has expired: sign in again") from exc


def viewer(request: Request, svc: Annotated[Services, Depends(services)]) -> Caller:
    token, _ = token_of(request)
    who = authenticate(svc, token)
    request.state.user_id = who.user_id
    return who


def csrf_token(request: Request) -> str:
    """The value every form of this session carries; empty without a cookie."""
    token, from_cookie = token_of(request)
    if not (token and from_cookie):
        return ""
    return hmac.new(token.encode(), b"tickrun-ui-csrf", hashlib.sha256).hexdigest()


def checked_viewer(request: Request, svc: Annotated[Services, Depends(services)],
                   csrf: Annotated[str, Form()] = "") -> Caller:
    """The viewer of a form post: a cookie session must send its CSRF field back."""
    who = viewer(request, svc)
    expected = csrf_token(request)
    if expected and not hmac.compare_digest(csrf.encode(), expected.encode()):
        raise ApiProblem(403, "the form is stale or from another site: reload the page")
    return who


Viewer = Annotated[Caller, Depends(viewer)]
FormViewer = Annotated[Caller, Depends(checked_viewer)]
