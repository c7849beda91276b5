"""The chart's Grafana dashboards name only metrics the code exports.

A panel that names a metric nothing exports shows "No data" forever; this catches it
without a cluster (tests/cluster/test_helm_release.py then checks that every query
returns data from a real Prometheus after an end-to-end run)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import api.middleware
import controller.kubernetes.informer
import controller.telemetry
import runner.telemetry

DASHBOARDS = Path(__file__).resolve().parents[2] / "helm" / "tickrun" / "dashboards"
METRIC = re.compile(r"\b(tickrun_[a-z0-9_]+)\b")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count", "_created"),
            "counter": ("_total", "_created"), "gauge": ("",), "summary": ("_sum", "_count")}


def exported() -> set[str]:
    """Every sample name the code's metrics expose (a counter `x` is `x_total`...)."""
    assert api.middleware and controller.kubernetes.informer  # imported for their metrics
    assert controller.telemetry and runner.telemetry
    names: set[str] = set()
    for metric in REGISTRY.collect():
        if metric.name.startswith("tickrun_"):
            names.update(metric.name + s for s in SUFFIXES.get(metric.type, ("",)))
    return names


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def test_there_are_dashboards_with_queries() -> None:
    assert len(dashboards()) >= 2
    for path in dashboards():
        assert list(panel_queries(json.loads(path.read_text()))), path


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_every_panel_names_only_exported_metrics(path: Path) -> None:
    known = exported()
    missing = [(title, name) for title, expr in panel_queries(json.loads(path.read_text()))
               for name in METRIC.findall(expr) if name not in known]
    assert not missing, f"panels name metrics nothing exports: {missing}"


def test_the_check_catches_a_made_up_metric() -> None:
    assert "tickrun_runs_admitted_total" in exported()
    assert "tickrun_runner_trades_total" in exported()
    assert "tickrun_runs_admitted" not in exported()  # a counter is read as ..._total
    assert "tickrun_made_up_seconds_bucket" not in exported()


def test_every_panel_has_a_unique_id_and_the_datasource_variable() -> None:
    for path in dashboards():
        d = json.loads(path.read_text())
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), path
        assert {v["name"] for v in d["templating"]["list"]} >= {"datasource", "namespace"}
        for panel in d["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path, panel["title"])
