"""Pick the store from a database URL: postgresql://... or sqlite:///path."""

from __future__ import annotations

from core.store.base import Store


def open_store(database_url: str, *, pool_size: int = 10) -> Store:
    """sqlite:///rel.db is relative, sqlite:////abs/path.db absolute (SQLAlchemy's form)."""
    if database_url.startswith(("postgresql://", "postgres://")):
        from core.store.postgres import PostgresStore

        return PostgresStore(database_url, max_size=pool_size)
    if database_url.startswith("sqlite:///"):
        from core.store.sqlite import SqliteStore

        return SqliteStore(database_url.removeprefix("sqlite:///") or ":memory:")
    raise ValueError("database URL must start with postgresql:// or sqlite:///")
