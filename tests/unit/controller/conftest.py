from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real SQLite store, migrated, in the test's own directory."""
    s = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    s.migrate()
    yield s
    s.close()
