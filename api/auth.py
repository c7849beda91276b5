"""Who is calling: Supabase access tokens (JWT), or the `tickrun dev` token.

HS256 tokens are checked with the project's JWT secret, RS256/ES256 tokens with keys
from the JWKS URL. The algorithm must be one we accept for that key (never `none`),
and expiry, audience (and issuer when configured) are checked; `sub` is the user id.
Every failure is the same 401, so a caller learns nothing about why from the answer.
"""

from __future__ import annotations

import hmac
import logging
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


class Authenticator:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings  # checked: a token can be verified (ApiSettings)

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
        return Caller(str(claims["sub"]))

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
