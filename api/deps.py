"""FastAPI dependencies: the services and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Caller
from api.services import Services

bearer = HTTPBearer(auto_error=False, description="Supabase access token (JWT)")


# Both are `async def`: FastAPI runs a plain `def` dependency on the thread pool, a hop
# per request that cost more than the work itself (issue 27's profile).
async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def caller(request: Request,
                 creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                 svc: Annotated[Services, Depends(services)]) -> Caller:
    header = f"{creds.scheme} {creds.credentials}" if creds else None
    who = svc.auth.remembered(header)
    if who is None and svc.auth.may_fetch_keys:  # a JWKS fetch must not block the loop
        who = await run_in_threadpool(svc.auth.authenticate, header)
    elif who is None:
        who = svc.auth.authenticate(header)
    request.state.user_id = who.user_id
    return who


ServicesDep = Annotated[Services, Depends(services)]
CallerDep = Annotated[Caller, Depends(caller)]


def is_operator(who: Caller, svc: Services) -> bool:
    """A user named in TICKRUN_OPERATOR_USER_IDS, or the `tickrun dev` token."""
    return who.dev or who.user_id in svc.settings.operator_user_ids
