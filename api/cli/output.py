"""What every `tickrun` command prints through: the consoles, the --json option and
its one JSON object on stdout."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

# Piped output keeps whole lines (rich would cut tables to 80 columns); --json is for scripts.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout")]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
