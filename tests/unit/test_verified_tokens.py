"""A verified token is remembered until its `exp`, a minute at most, and only when it
passed: a forged, expired or altered token is checked (and refused) every time."""

from __future__ import annotations

import time

import jwt
import pytest
from pydantic import SecretStr

from api.auth import Authenticator, VerifiedTokens
from api.errors import ApiProblem
from api.settings import ApiSettings

SECRET = "a-secret-that-is-long-enough-for-hs256!"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def tokens(clock: Clock, **kwargs: int) -> VerifiedTokens:
    return VerifiedTokens(wall=clock, monotonic=clock, **kwargs)


@pytest.mark.parametrize(("expires_in", "good_for"), [
    (10, 10),  # until the token's own expiry
    (3600, 60),  # a long-lived token is checked again after max_age
])
def test_a_token_is_remembered_until_its_expiry_or_max_age(expires_in: int,
                                                            good_for: int) -> None:
    clock = Clock()
    cache = tokens(clock, max_age=60)
    cache.remember("t", "user-a", expires_at=clock.now + expires_in)
    clock.now += good_for - 0.1
    assert cache.user_of("t") == "user-a"
    clock.now += 0.1
    assert cache.user_of("t") is None


def test_a_token_past_its_expiry_is_never_remembered() -> None:
    clock = Clock()
    cache = tokens(clock)
    cache.remember("t", "user-a", expires_at=clock.now - 5)  # accepted within the leeway
    assert cache.user_of("t") is None


def test_the_oldest_token_goes_when_full() -> None:
    clock = Clock()
    cache = tokens(clock, max_entries=2)
    for name in ("a", "b", "c"):
        cache.remember(name, f"user-{name}", expires_at=clock.now + 30)
    assert [cache.user_of(n) for n in ("a", "b", "c")] == [None, "user-b", "user-c"]


def sign(claims: dict[str, object], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def test_only_a_token_that_passed_is_remembered() -> None:
    auth = Authenticator(ApiSettings(jwt_secret=SecretStr(SECRET)))
    claims = {"sub": "user-a", "aud": "authenticated", "exp": int(time.time()) + 600}
    good = sign(claims)
    assert auth.remembered(f"Bearer {good}") is None
    assert auth.authenticate(f"Bearer {good}").user_id == "user-a"
    assert auth.remembered(f"Bearer {good}") == auth.authenticate(f"Bearer {good}")
    # The same claims signed with another key: refused every time, never remembered.
    forged = sign(claims, secret=SECRET + "-not-it")
    for _ in range(2):
        with pytest.raises(ApiProblem) as refused:
            auth.authenticate(f"Bearer {forged}")
        assert refused.value.status == 401
        assert auth.remembered(f"Bearer {forged}") is None
    # A remembered token's text with one character changed is another token.
    assert auth.remembered(f"Bearer {good[:-1]}{'A' if good[-1] != 'A' else 'B'}") is None
    assert auth.remembered(f"Basic {good}") is None
    assert auth.remembered(None) is None
