"""Fixtures of the llm decider's tests: a provider key, and the local OpenAI-compatible
server that expects it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAI, fake_openai


@pytest.fixture
def api_key() -> str:
    return f"sk-test-{secrets.token_hex(20)}"


@pytest.fixture
def fake(api_key: str) -> Iterator[FakeOpenAI]:
    with fake_openai(api_key) as server:
        yield server
