"""FastAPI dependencies: the services and the authenticated caller."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Caller
from api.services import Services

bearer = HTTPBearer(auto_error=False, description="Supabase access token (JWT)")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def caller(request: Request,
           creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
           svc: Annotated[Services, Depends(services)]) -> Caller:
    header = f"{creds.scheme} {creds.credentials}" if creds else None
    who = svc.auth.authenticate(header)
    request.state.user_id = who.user_id
    return who


ServicesDep = Annotated[Services, Depends(services)]
CallerDep = Annotated[Caller, Depends(caller)]


def is_operator(who: Caller, svc: Services) -> bool:
    """A user named in TICKRUN_OPERATOR_USER_IDS, or the `tickrun dev` token."""
    return who.dev or who.user_id in svc.settings.operator_user_ids


# A page's cursor is the id it ended at, as 8 big-endian bytes in unpadded base64url: 11
# characters. Every string of the pattern decodes to an id below 2**63 (the first
# character holds the top bit, so it is one of the first 32 of the alphabet): the schema
# allows exactly the cursors the server takes.
CURSOR_PATTERN = r"^[A-Za-f][A-Za-z0-9_-]{10}$"
CursorQuery = Annotated[str | None, Query(
    pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page")]


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(last_id.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id of a cursor that matched CURSOR_PATTERN (the route's query checked it)."""
    if not cursor:
        return None
    return int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")
