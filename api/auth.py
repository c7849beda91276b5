"""Who is calling: Supabase access tokens (JWT), or the `tickrun dev` token.

HS256 tokens are checked with the project's JWT secret, RS256/ES256 tokens with keys
from the JWKS URL. The algorithm must be one we accept for that key (never `none`),
and expiry, audience (and issuer when configured) are checked; `sub` is the user id.
Every failure is the same 401, so a caller learns nothing about why from the answer.

A token that passed is remembered for a minute at most (`VerifiedTokens`): a client sends
the same token with every request, and checking its signature each time was a tenth of a
GET's CPU (issue 27's profile).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt

from api.errors import ApiProblem
from api.settings import ApiSettings

log = logging.getLogger(__name__)

ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tickrun"'}


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    dev: bool = False


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, detail, headers=CHALLENGE)


class VerifiedTokens:
    """User ids of tokens verified lately, by the token's text, each until its `exp` and
    for `max_age` seconds at most: a key rotated out of the JWKS stops honouring a token
    within that time, as a key cache would. Only tokens that passed are kept, at most
    `max_entries` (the oldest go first); the process's memory is all they live in."""

    def __init__(self, *, max_entries: int = 10_000, max_age: float = 60.0,
                 wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_entries, self.max_age = max_entries, max_age
        self._wall, self._monotonic = wall, monotonic
        self._users: dict[str, tuple[str, float]] = {}  # token -> (user id, good until)
        self._lock = threading.Lock()  # JWKS-checked tokens are remembered from threads

    def user_of(self, token: str) -> str | None:
        hit = self._users.get(token)
        if hit is None:
            return None
        if self._monotonic() >= hit[1]:
            with self._lock:  # not while `remember` walks the dict to make room
                self._users.pop(token, None)
            return None
        return hit[0]

    def remember(self, token: str, user_id: str, expires_at: float) -> None:
        """`expires_at`: the token's `exp` (seconds since the epoch)."""
        ttl = min(expires_at - self._wall(), self.max_age)
        if ttl <= 0:
            return
        with self._lock:
            while len(self._users) >= self.max_entries:
                self._users.pop(next(iter(self._users)))  # dicts keep insertion order
            self._users[token] = (user_id, self._monotonic() + ttl)


class Authenticator:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings  # checked: a token can be verified (ApiSettings)
        self.verified = VerifiedTokens()

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient | None:
        if not self.settings.jwks_url:
            return None
        return jwt.PyJWKClient(self.settings.jwks_url, cache_keys=True, lifespan=3600,
                               timeout=5)

    @property
    def may_fetch_keys(self) -> bool:
        """Whether verifying a token may read the JWKS URL (network); without one it is
        CPU work only: the dev token or a shared secret."""
        return self.settings.jwks_url is not None

    def remembered(self, authorization: str | None) -> Caller | None:
        """The caller of a token verified lately, without verifying it again; None when
        it must be verified (`authenticate`)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        user_id = self.verified.user_of(token)
        return Caller(user_id) if user_id is not None else None

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("expected `Authorization: Bearer <token>`")
        dev = self.settings.dev_token
        if self.settings.auth_mode == "dev" and dev is not None and hmac.compare_digest(
                token.encode(), dev.get_secret_value().encode()):
            return Caller(self.settings.dev_user_id, dev=True)
        if not (self.settings.jwt_secret or self.settings.jwks_url):
            raise unauthorized("invalid token")
        claims = self._decode(token)
        user_id = str(claims["sub"])
        self.verified.remember(token, user_id, float(claims["exp"]))
        return Caller(user_id)

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            key, algorithms = self._key_for(token)
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=algorithms, audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer, leeway=self.settings.jwt_leeway_seconds,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            log.info("token refused: %s", type(exc).__name__)
            raise unauthorized("invalid or expired token") from exc
        if not str(claims.get("sub") or "").strip():
            raise unauthorized("invalid or expired token")
        return claims

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256" and self.settings.jwt_secret is not None:
            return self.settings.jwt_secret.get_secret_value(), ["HS256"]
        if alg in ASYMMETRIC and self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key, [str(alg)]
        raise jwt.InvalidAlgorithmError(f"algorithm {alg!r} is not accepted")
