"""The `tickrun` command."""

from api.cli.main import app, main

__all__ = ["app", "main"]
