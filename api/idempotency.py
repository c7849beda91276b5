"""Idempotent creates (`Idempotency-Key`): the header, the hash of what was asked, and
the answer to a replay."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import Header, Response

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]+$",
    description="The same key and body give the same resource; a different body is a 409")]


def request_hash(document: Any) -> str:
    """What a request asked for, as stored with its key: a replay with another body is
    a conflict, the same body in another key order is not."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def mark_replayed(response: Response) -> None:
    """The answer of an earlier request with the same key: 200, not 201."""
    response.status_code = 200
    response.headers["Idempotent-Replayed"] = "true"
