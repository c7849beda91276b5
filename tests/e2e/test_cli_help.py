"""`tickrun --help` in an 80-column terminal: each command's description reads as
sentences wrapped by the terminal, not broken where the source's docstring was."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.test_cli import REPO, clean_env

GROUPS = [[], ["runs"], ["models"], ["data"], ["usage"], ["batches"], ["schedules"]]


def command_panel(args: list[str]) -> dict[str, list[str]]:
    """The Commands panel of a help page: each command's description, line by line."""
    done = subprocess.run([sys.executable, "-m", "api.cli", *args, "--help"], cwd=REPO,
                          env=clean_env(COLUMNS="80", TERM="dumb"), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    panel = done.stdout.split("Commands")[1].splitlines()[1:]
    entries: dict[str, list[str]] = {}
    name = ""
    for line in panel:
        row = re.match(r"^│ (\S*)\s+(.*?)\s*│$", line)
        if row is None:
            break
        if row.group(1):
            name = row.group(1)
            entries[name] = [row.group(2)]
        else:
            entries[name].append(row.group(2))
    return entries


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: " ".join(g) or "tickrun")
def test_every_description_is_wrapped_by_the_terminal(group: list[str]) -> None:
    entries = command_panel(group)
    assert entries and all(lines[0] for lines in entries.values()), entries  # none empty
    width = max(len(line) for lines in entries.values() for line in lines)
    for name, lines in entries.items():
        for line in lines[:-1]:  # a line that ends short, then goes on: a hard break
            assert len(line) >= width - 16, f"{' '.join(group)} {name}: {lines}"
