"""`tickrun batches` as a user runs it against `tickrun dev`: a matrix made and followed to
the end, compared as a table and as CSV, listed, and stopped."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from api.cli.batches import COLUMNS
from tests.e2e.test_cli import TICKRUN, dev_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(300)


def test_batches_create_follow_compare_csv(dev_server: dict[str, str],  # noqa: F811
                                           tmp_path: Path) -> None:
    def tickrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TICKRUN, *args], cwd=tmp_path,
                              env={**dev_server, "COLUMNS": "250"}, capture_output=True,
                              text=True, timeout=200)
    ids = [str(json.loads(tickrun("models", "create", name, "--json").stdout)["id"])
           for name in ("hold-a", "sma-b")]
    made = tickrun("batches", "create", "--model", ids[0], "--model", ids[1], "--symbol",
                   "msft", "--symbol", "aapl", "--start", "2024-01-02", "--end", "2024-02-29",
                   "--decider", "sma_crossover", "--data", "synthetic", "--name", "cli",
                   "--no-baselines", "--follow")
    assert made.returncode == 0, made.stderr
    assert "batch " in made.stderr and "4 runs queued" in made.stderr
    assert "hold-a" in made.stdout and "by player" in made.stdout, made.stdout
    assert "by session" in made.stdout and "marks:" in made.stdout, made.stdout

    listed = json.loads(tickrun("batches", "ls", "--json").stdout)["items"]
    assert len(listed) == 1 and listed[0]["counts"] == {"completed": 4}
    batch_id = str(listed[0]["id"])
    out = tmp_path / "compare.csv"
    compared = tickrun("batches", "compare", batch_id, "--csv", str(out), "--json")
    assert compared.returncode == 0, compared.stderr
    report = json.loads(compared.stdout)
    with out.open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 5
    assert [r[1] for r in rows[1:]] == [str(r["run_id"]) for r in report["rows"]]
    assert [r[6] for r in rows[1:]] == [str(r["return_pct"]) for r in report["rows"]]
    table = tickrun("batches", "compare", batch_id, "--runs")
    assert table.returncode == 0 and "MSFT" in table.stdout and "2024-01-02..2024-02-29" in \
        table.stdout, table.stdout
    assert "runs" in table.stdout and str(report["rows"][0]["run_id"]) in table.stdout

    # Repeats beside the baselines: the players' figures are means with an interval.
    again = tickrun("batches", "create", "--model", ids[0], "--model", ids[1], "--symbol",
                    "msft", "--start", "2024-01-02", "--end", "2024-02-29", "--repeats", "2",
                    "--decider", "sma_crossover", "--data", "synthetic", "--follow")
    assert again.returncode == 0 and "7 runs queued" in again.stderr, again.stderr
    assert "random (baseline)" in again.stdout and "vs random" in again.stdout, again.stdout
    assert " ± " in again.stdout, again.stdout  # two repeats make an interval
    board = tickrun("leaderboard", "--metric", "return_pct")
    assert board.returncode == 0 and "leaderboard: mean return %" in board.stdout, board.stderr
    assert "hold-a" in board.stdout and "buy_and_hold (baseline)" in board.stdout
    entries = json.loads(tickrun("leaderboard", "--json").stdout)["entries"]
    assert {e["player"] for e in entries} == {"hold-a", "sma-b", "buy_and_hold",
                                              "sma_crossover", "random"}
    assert next(e for e in entries if e["player"] == "hold-a")["runs"] == 2 + 2
    bad = tickrun("leaderboard", "--metric", "luck")
    assert bad.returncode == 1 and "error 422" in bad.stderr and "sharpe" in bad.stderr

    stopped = tickrun("batches", "stop", batch_id)
    assert stopped.returncode == 0 and "stopping 0 runs" in stopped.stdout
    refused = tickrun("batches", "create", "--model", ids[0], "--symbol", "msft", "--date",
                      "2025-01-01", "--data", "synthetic")
    assert refused.returncode == 1 and "error 422" in refused.stderr, refused.stderr
    usage = tickrun("batches", "create", "--model", ids[0], "--symbol", "msft")
    assert usage.returncode == 2
    missing = tickrun("batches", "get", "999")
    assert missing.returncode == 1 and "404" in missing.stderr
