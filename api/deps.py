"""FastAPI dependencies: the services and the authenticated caller."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Caller
from api.errors import ApiProblem
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


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        # Bounded like every id, so no database is handed an integer it cannot bind.
        if prefix != "id" or not value.isdigit() or int(value) > 2**63 - 1:
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiProblem(400, "invalid cursor; pass back the next_cursor you got") from exc
