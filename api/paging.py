"""Keyset pages: every list route's cursor, its pattern, and the page cut from one row
more than it shows (that row says whether there is a next page)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

from fastapi import Query

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


T = TypeVar("T")


def keyset_page(rows: Sequence[T], limit: int, key: Callable[[T], int]
                ) -> tuple[list[T], str | None]:
    """`rows` as read with `limit + 1`: the page, and the cursor of the next one (None on
    the last page)."""
    page = list(rows[:limit])
    more = len(rows) > limit and page
    return page, encode_cursor(key(page[-1])) if more else None
