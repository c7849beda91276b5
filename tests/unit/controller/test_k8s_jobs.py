"""The Job of a run: labels, retry policy, hardening, and no secret values."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal

import pytest

from controller.kubernetes.jobs import broker_secret_name, build_job, job_name, label_value
from controller.kubernetes.settings import KubernetesSettings
from core.live_options import Broker
from core.records import Run
from core.spec import RunSpec
from core.status import RunStatus
from tests.factories import daily_spec

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def a_run(user_id: str = "7d9f6a1c-2b1e-4a8e-9c43-1f0e5b1a2c3d") -> Run:
    return Run(id=42, user_id=user_id, model_id=7, spec=daily_spec(initial_cash=Decimal(5000)),
               status=RunStatus.QUEUED, status_reason=None, steps_total=124, steps_done=0,
               created_at=NOW, admitted_at=None, started_at=None, finished_at=None,
               stop_requested_at=None, result=None)


def test_it_should_be_suspended_and_labelled_for_kubectl() -> None:
    job = build_job(a_run(), KubernetesSettings(namespace="runs"))
    assert job["metadata"]["name"] == job_name(42) == "tickrun-run-42"
    assert job["metadata"]["namespace"] == "runs"
    assert job["spec"]["suspend"] is True
    labels = job["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/name": "tickrun-run",
                      "app.kubernetes.io/managed-by": "tickrun", "tickrun.io/run-id": "42",
                      "tickrun.io/user-id": "7d9f6a1c-2b1e-4a8e-9c43-1f0e5b1a2c3d",
                      "tickrun.io/model-id": "7"}
    assert job["spec"]["template"]["metadata"]["labels"] == labels  # copied to the pod
    notes = job["metadata"]["annotations"]
    assert notes["tickrun.io/symbols"] == "MSFT" and notes["tickrun.io/mode"] == "daily"
    assert notes["tickrun.io/start"] == "2024-01-02"


def test_it_should_fail_at_once_on_a_config_error_and_ignore_disruptions() -> None:
    spec = build_job(a_run(), KubernetesSettings(backoff_limit=2))["spec"]
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [78]
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[2]["action"] == "Ignore" and rules[2]["onExitCodes"]["values"] == [75]
    assert spec["backoffLimit"] == 2 and spec["podReplacementPolicy"] == "Failed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] > 6.5 * 3600 and spec["ttlSecondsAfterFinished"] > 0


def test_it_should_run_hardened_with_the_run_id_as_only_input() -> None:
    pod = build_job(a_run(), KubernetesSettings())["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["args"] == ["--run-id", "42"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
    assert ctx["capabilities"] == {"drop": ["ALL"]}


def test_it_should_reference_secrets_never_hold_them() -> None:
    settings = KubernetesSettings(runner_env={"TICKRUN_RUNNER_DECISION_TIMEOUT_SECONDS": "20"})
    job = build_job(a_run(), settings)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TICKRUN_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "tickrun-database", "key": "url"}
    assert env["TICKRUN_LLM_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["TICKRUN_RUNNER_DECISION_TIMEOUT_SECONDS"]["value"] == "20"
    text = json.dumps(job)
    assert "postgresql://" not in text and "redis://" not in text


MARKET_DATA_KEYS = {"TICKRUN_POLYGON_API_KEY": "pk-polygon-not-in-jobs",
                    "TICKRUN_ALPACA_API_KEY_ID": "AKID-not-in-jobs",
                    "TICKRUN_ALPACA_API_SECRET_KEY": "ask-alpaca-not-in-jobs"}


def test_it_should_reference_market_data_keys_never_hold_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The API process holds the keys itself (it fills the cache); its Jobs must not.
    for name, value in MARKET_DATA_KEYS.items():
        monkeypatch.setenv(name, value)
    market = {"TICKRUN_POLYGON_BASE_URL": "https://polygon.example",
              "TICKRUN_ALPACA_DATA_URL": "https://alpaca.example", "TICKRUN_ALPACA_FEED": "sip",
              "TICKRUN_MARKET_DATA_PROVIDER": "alpaca",
              "TICKRUN_MARKET_DATA_FETCH_DEADLINE_SECONDS": "60"}
    job = build_job(a_run(), KubernetesSettings(runner_env=market))
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TICKRUN_POLYGON_API_KEY"] == {"name": "TICKRUN_POLYGON_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "tickrun-market-data", "key": "polygon-api-key",
                         "optional": True}}}
    assert env["TICKRUN_ALPACA_API_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "tickrun-market-data", "key": "alpaca-api-key-id", "optional": True}
    assert env["TICKRUN_ALPACA_API_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "tickrun-market-data", "key": "alpaca-api-secret-key", "optional": True}
    for name in MARKET_DATA_KEYS:
        assert "value" not in env[name]
    # The non-secret settings come as plain values, like every runner setting.
    assert {k: env[k]["value"] for k in market} == market
    text = json.dumps(job)
    for value in MARKET_DATA_KEYS.values():
        assert value not in text


def test_market_data_secrets_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference comes as the chart passes it (JSON in TICKRUN_K8S_*_SECRET); a None one
    is left out."""
    monkeypatch.setenv("TICKRUN_K8S_POLYGON_API_KEY_SECRET",
                       '{"name": "md", "key": "polygon", "optional": false}')
    job = build_job(a_run(), KubernetesSettings(alpaca_api_key_id_secret=None,
                                                alpaca_api_secret_key_secret=None))
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TICKRUN_POLYGON_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "md", "key": "polygon"}
    assert "TICKRUN_ALPACA_API_KEY_ID" not in env
    assert "TICKRUN_ALPACA_API_SECRET_KEY" not in env


def test_label_values_are_sanitized() -> None:
    assert label_value("user@example.com") == "user_example.com"
    assert len(label_value("x" * 100)) == 63
    assert label_value("-abc-") == "abc"
    job = build_job(a_run(user_id="user@example.com"), KubernetesSettings())
    assert job["metadata"]["annotations"]["tickrun.io/user-id"] == "user@example.com"


def test_mcp_header_values_come_from_the_operators_secret_only_when_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The MCP servers' header values reach run pods as the MCP_* keys of one Secret
    (envFrom, optional): the Job names the Secret, never a value; none without it."""
    container = build_job(a_run(), KubernetesSettings())["spec"]["template"]["spec"][
        "containers"][0]
    assert "envFrom" not in container
    monkeypatch.setenv("TICKRUN_K8S_MCP_SECRET", "tickrun-mcp")
    container = build_job(a_run(), KubernetesSettings())["spec"]["template"]["spec"][
        "containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "tickrun-mcp", "optional": True}}]


def test_a_paper_run_reads_its_users_broker_secret_and_no_other_run_does() -> None:
    """A live run on alpaca_paper gets its own user's Secret (envFrom, not optional: a
    pod without the keys never starts); a sim live run and a replay get none; the
    book is a label for kubectl."""
    paper = RunSpec.model_validate({"mode": "intraday", "symbols": ["AAPL"],
                                    "date": "2025-07-03", "data": "alpaca",
                                    "live": {"broker": "alpaca_paper"}})
    run = dataclasses.replace(a_run("Alice@Example.com"), spec=paper)
    job = build_job(run, KubernetesSettings())
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "tickrun-broker-alice-example.com"}}]
    assert job["metadata"]["labels"]["tickrun.io/live"] == "alpaca_paper"
    assert "TICKRUN_BROKER" not in json.dumps(job)
    sim = dataclasses.replace(run, spec=paper.model_copy(
        update={"live": paper.live.model_copy(update={"broker": Broker.SIM})}))  # type: ignore[union-attr]
    sim_job = build_job(sim, KubernetesSettings())
    assert "envFrom" not in sim_job["spec"]["template"]["spec"]["containers"][0]
    assert sim_job["metadata"]["labels"]["tickrun.io/live"] == "sim"
    assert "envFrom" not in build_job(a_run(), KubernetesSettings())["spec"]["template"][
        "spec"]["containers"][0]
    assert broker_secret_name("tickrun-broker-", "7d9f_6A1C") == "tickrun-broker-7d9f-6a1c"
