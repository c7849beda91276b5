"""The `tickrun` command."""

from api.cli.main import app

__all__ = ["app"]
