"""The chart renders, lints and validates with default and with full values; the schema
refuses wrong types; no secret value ever appears in what it renders; the Prometheus
Operator objects appear only when their CRDs exist; the cluster's API server accepts
every rendered object (server-side dry run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kubernetes.jobs import runner_env as job_env
from controller.kubernetes.settings import KubernetesSettings
from tests.cluster.helpers import Cluster, cluster_path

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

CHART = Path(__file__).resolve().parents[2] / "helm" / "tickrun"
FULL = Path(__file__).resolve().parent / "values-full.yaml"
MONITORING = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
              "--api-versions", "monitoring.coreos.com/v1/PodMonitor"]


@pytest.fixture(autouse=True)
def helm_binary() -> None:
    """helm comes with the test cluster's build (`make cluster-build`)."""
    if os.environ.get("TICKRUN_SKIP_CLUSTER") == "1":
        pytest.skip("TICKRUN_SKIP_CLUSTER=1: the chart tests use the cluster's helm")
    if not Path(cluster_path("bin"), "helm").is_file():
        pytest.fail("no helm: run `make cluster-build`", pytrace=False)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([f"{cluster_path('bin')}/helm", *args], capture_output=True,
                         text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}")
    return out


def render(*args: str) -> list[dict[str, Any]]:
    out = helm("template", "rel", str(CHART), "-n", "apps", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


@pytest.mark.parametrize("values", [[], ["-f", str(FULL)]], ids=["default", "full"])
def test_lint_is_clean(values: list[str]) -> None:
    out = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in out.stdout


def test_default_values_render_every_part() -> None:
    docs = render()
    assert kinds(docs) == sorted(
        ["ConfigMap"] * 3 + ["Deployment"] * 2 + ["Job", "Lease", "Pod", "Service"]
        + ["NetworkPolicy"] * 3 + ["PodDisruptionBudget"] * 2 + ["Role"] * 2
        + ["RoleBinding"] * 2 + ["ServiceAccount"] * 2)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    controller = by["Deployment", "rel-tickrun-controller"]["spec"]
    assert controller["replicas"] == 2
    env = controller["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    api = by["Deployment", "rel-tickrun-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    settings = by["ConfigMap", "rel-tickrun-settings"]["data"]
    assert settings["TICKRUN_EXECUTOR"] == "kubernetes"
    assert settings["TICKRUN_EMBEDDED_CONTROLLER"] == "false"
    assert settings["TICKRUN_K8S_NAMESPACE"] == "apps"
    # The runner writes events under the prefix the API reads, and fetches market data
    # with the same settings.
    assert json.loads(settings["TICKRUN_K8S_RUNNER_ENV"]) == {
        "TICKRUN_REDIS_KEY_PREFIX": settings["TICKRUN_REDIS_KEY_PREFIX"],
        "TICKRUN_ALPACA_FEED": "iex", "TICKRUN_MARKET_DATA_FETCH_DEADLINE_SECONDS": "300"}
    assert json.loads(settings["TICKRUN_K8S_POLYGON_API_KEY_SECRET"]) == {
        "name": "tickrun-market-data", "key": "polygon-api-key", "optional": True}
    hooks = {d["kind"]: d["metadata"]["annotations"]["helm.sh/hook"] for d in docs
             if "helm.sh/hook" in d["metadata"].get("annotations", {})}
    assert hooks == {"Job": "pre-install,pre-upgrade", "Pod": "test"}
    dashboards = [d for d in docs if d["metadata"].get("labels", {}).get("grafana_dashboard")]
    assert len(dashboards) == 2 and all(d["metadata"]["labels"]["grafana_dashboard"] == "1"
                                        for d in dashboards)


def test_every_pod_is_hardened() -> None:
    for doc in render("-f", str(FULL)):
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") if doc["kind"] in ("Deployment", "Job") \
            else spec if doc["kind"] == "Pod" else None
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {
                "drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False, c["name"]


def test_secrets_are_referenced_by_name_and_never_rendered() -> None:
    for args in ([], ["-f", str(FULL)]):
        docs = render(*args)
        assert "Secret" not in kinds(docs)
        for doc in docs:
            if doc["kind"] != "Deployment":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                for var in c.get("env", []):
                    if var["name"] in ("TICKRUN_DATABASE_URL", "TICKRUN_REDIS_URL",
                                       "TICKRUN_JWT_SECRET", *MARKET_DATA_KEYS):
                        assert "secretKeyRef" in var["valueFrom"] and "value" not in var


MARKET_DATA_KEYS = ("TICKRUN_POLYGON_API_KEY", "TICKRUN_ALPACA_API_KEY_ID",
                    "TICKRUN_ALPACA_API_SECRET_KEY")
MARKET_DATA_VALUES = {
    "secrets": {"marketData": {
        "polygon": {"existingSecret": "md-polygon", "key": "token", "optional": False},
        "alpacaKeyId": {"existingSecret": "md-alpaca", "key": "key-id"},
        "alpacaSecretKey": {"existingSecret": "md-alpaca", "key": "secret-key"}}},
    "marketData": {"provider": "alpaca", "polygon": {"baseUrl": "http://polygon.test:8080"},
                   "alpaca": {"dataUrl": "https://alpaca.test", "feed": "sip"},
                   "fetchDeadlineSeconds": 42.5},
}
MARKET_DATA_SETTINGS = {
    "TICKRUN_MARKET_DATA_PROVIDER": "alpaca",
    "TICKRUN_POLYGON_BASE_URL": "http://polygon.test:8080",
    "TICKRUN_ALPACA_DATA_URL": "https://alpaca.test", "TICKRUN_ALPACA_FEED": "sip",
    "TICKRUN_MARKET_DATA_FETCH_DEADLINE_SECONDS": "42.5"}


def test_market_data_keys_reach_the_api_and_the_runs_by_reference_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = tmp_path / "market-data.yaml"
    values.write_text(yaml.safe_dump(MARKET_DATA_VALUES))
    docs = render("-f", str(values))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    refs = {"TICKRUN_POLYGON_API_KEY": {"name": "md-polygon", "key": "token"},
            "TICKRUN_ALPACA_API_KEY_ID": {"name": "md-alpaca", "key": "key-id",
                                          "optional": True},
            "TICKRUN_ALPACA_API_SECRET_KEY": {"name": "md-alpaca", "key": "secret-key",
                                              "optional": True}}
    # The API resolves the default provider and fills the cache: keys by secretKeyRef,
    # the other settings from the settings ConfigMap.
    api = by["Deployment", "rel-tickrun-api"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in api["env"]}
    assert {k: env[k] for k in MARKET_DATA_KEYS} == {
        k: {"name": k, "valueFrom": {"secretKeyRef": ref}} for k, ref in refs.items()}
    assert {"configMapRef": {"name": "rel-tickrun-settings"}} in api["envFrom"]
    settings = by["ConfigMap", "rel-tickrun-settings"]["data"]
    assert {k: settings[k] for k in MARKET_DATA_SETTINGS} == MARKET_DATA_SETTINGS
    assert not set(MARKET_DATA_KEYS) & set(settings)
    # The controller's run Jobs: Secret names in TICKRUN_K8S_*_SECRET, settings in the
    # runner env; the Job it builds from them holds references only.
    runner_env = json.loads(settings["TICKRUN_K8S_RUNNER_ENV"])
    assert MARKET_DATA_SETTINGS.items() <= runner_env.items()
    assert not set(MARKET_DATA_KEYS) & set(runner_env)
    controller = by["Deployment", "rel-tickrun-controller"]["spec"]["template"]["spec"]
    assert not set(MARKET_DATA_KEYS) & {e["name"] for e in controller["containers"][0]["env"]}

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    job = {e["name"]: e for e in job_env(KubernetesSettings())}
    assert {k: job[k] for k in MARKET_DATA_KEYS} == {
        k: {"name": k, "valueFrom": {"secretKeyRef": ref}} for k, ref in refs.items()}
    assert {k: job[k]["value"] for k in MARKET_DATA_SETTINGS} == MARKET_DATA_SETTINGS
    assert "Secret" not in kinds(docs)


def test_full_values_switch_everything_on() -> None:
    docs = render("-f", str(FULL), *MONITORING)
    assert {"ServiceMonitor", "PodMonitor"} <= set(kinds(docs))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by["ServiceMonitor", "tickrun-full-api"]["metadata"]["labels"]["release"] == \
        "prometheus"
    api = by["Deployment", "tickrun-full-api"]["spec"]["template"]["spec"]
    assert api["containers"][0]["image"].startswith("registry.example.com/tickrun/api@sha256:")
    assert api["serviceAccountName"] == "tickrun-api-sa"
    netpol = by["NetworkPolicy", "tickrun-full-api"]["spec"]
    assert netpol["policyTypes"] == ["Ingress", "Egress"]
    dash = [d for d in docs if d["metadata"]["name"].startswith("tickrun-full-dashboard-")]
    assert {d["metadata"]["namespace"] for d in dash} == {"monitoring"}


def test_operator_objects_only_when_the_crds_exist() -> None:
    assert not {"ServiceMonitor", "PodMonitor"} & set(kinds(render()))
    assert kinds(render(*MONITORING)).count("PodMonitor") == 2


@pytest.mark.parametrize("setting", [
    "api.replicas=two", "controller.metricsPort=http", "runs.backoffLimit=-1",
    "secrets.database.existingSecret=", "image.api.pullPolicy=Sometimes",
    "metrics.serviceMonitor.interval=often", "settings.perUserLimit=0", "nosuchvalue=1",
    "api.pdb.minAvailable=half", "settings.extraEnv.PATH=/bin", "marketData.alpaca.feed=foo",
    "marketData.provider=yahoo", "marketData.fetchDeadlineSeconds=0",
    "marketData.polygon.baseUrl=ftp://polygon", "secrets.marketData.polygon.existingSecret=",
    "secrets.marketData.alpacaSecretKey.value=not-here"])
def test_the_schema_refuses_wrong_values(setting: str) -> None:
    out = helm("template", "rel", str(CHART), "--set", setting, check=False)
    assert out.returncode != 0, setting
    assert "schema" in out.stderr or "values don't meet" in out.stderr, out.stderr


def test_the_api_needs_a_way_to_verify_tokens() -> None:
    out = helm("template", "rel", str(CHART), "--set", "secrets.jwt.existingSecret=",
               check=False)
    assert out.returncode != 0 and "auth.jwksUrl" in out.stderr


def test_the_cluster_accepts_every_rendered_object(cluster: Cluster, namespace: str) -> None:
    """A server-side dry run: the API server validates every field of every object."""
    for args in ([], ["-f", str(FULL)]):
        rendered = helm("template", "rel", str(CHART), "-n", namespace, *args).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        for d in docs:
            d["metadata"]["namespace"] = namespace  # the full values put dashboards elsewhere
        out = subprocess.run(
            [f"{cluster_path('bin')}/kubectl", f"--kubeconfig={cluster.kubeconfig}", "-n",
             namespace, "apply", "--dry-run=server", "-f", "-"],
            input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.count("(server dry run)") == len(docs)


def test_every_value_is_documented_and_in_the_schema() -> None:
    """Every leaf of values.yaml has a `# --` comment (on itself or the block it is in),
    and the schema knows every key (it refuses unknown ones)."""

    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented: list[str] = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z_][\w.-]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith(
                "# --"):
            j -= 1
        documented = (j >= 0 and lines[j].strip().startswith("# --")) or any(
            d for _, d in stack)
        if rest and not documented:
            undocumented.append(key)
        stack.append((indent, documented))
    assert not undocumented, undocumented

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(v: Any, s: dict[str, Any], path: str) -> None:
        if isinstance(v, dict) and "properties" in s:
            for k, child in v.items():
                assert k in s["properties"], f"{path}.{k} is not in the schema"
                walk(child, s["properties"][k], f"{path}.{k}")
    walk(values, schema, "")


def crd(plural: str, kind: str) -> dict[str, Any]:
    """A minimal stand-in for a Prometheus Operator CRD: same group, version and kind."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com",
                         "labels": {"app.kubernetes.io/managed-by": "tickrun-tests"}},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {
                                       "type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_monitors_follow_the_clusters_crds(cluster: Cluster, namespace: str) -> None:
    """`.Capabilities.APIVersions.Has` against the live API server: no monitors without the
    Prometheus Operator's CRDs; a ServiceMonitor and two PodMonitors with them."""
    kubectl = [f"{cluster_path('bin')}/kubectl", f"--kubeconfig={cluster.kubeconfig}"]
    install = ["install", "mon", str(CHART), "-n", namespace, "--dry-run=server",
               f"--kubeconfig={cluster.kubeconfig}"]
    assert not {"ServiceMonitor", "PodMonitor"} & set(
        kinds([d for d in yaml.safe_load_all(manifest(helm(*install).stdout)) if d]))
    crds = yaml.safe_dump_all([crd("servicemonitors", "ServiceMonitor"),
                               crd("podmonitors", "PodMonitor")])
    subprocess.run([*kubectl, "apply", "-f", "-"], input=crds, check=True, text=True,
                   capture_output=True, timeout=60)
    try:
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=30s",
                        "crd/servicemonitors.monitoring.coreos.com",
                        "crd/podmonitors.monitoring.coreos.com"], check=True,
                       capture_output=True, timeout=60)
        docs = [d for d in yaml.safe_load_all(manifest(helm(*install).stdout)) if d]
        assert kinds(docs).count("ServiceMonitor") == 1
        assert kinds(docs).count("PodMonitor") == 2
    finally:
        subprocess.run([*kubectl, "delete", "-f", "-", "--wait=true"], input=crds,
                       text=True, capture_output=True, timeout=60)


def manifest(out: str) -> str:
    """The MANIFEST part of `helm install --dry-run` output."""
    return out.split("MANIFEST:", 1)[1].split("\nNOTES:", 1)[0]


def test_llm_spend_settings_reach_the_runs_and_the_admission(tmp_path: Path) -> None:
    values = tmp_path / "spend.yaml"
    values.write_text(yaml.safe_dump({"llmSpend": {
        "userDailyCostUsd": "25", "runMaxCostUsd": 1.5, "runMaxTokens": 200000,
        "requestsPerMinute": 500, "tokensPerMinute": "",
        "prices": {"my-model": {"input": 1.0, "cached_input": 0.25, "output": 4.0}}}}))
    settings = {(d["kind"], d["metadata"]["name"]): d for d in render("-f", str(values))}[
        "ConfigMap", "rel-tickrun-settings"]["data"]
    assert settings["TICKRUN_USER_DAILY_COST_USD"] == "25"  # the controller and the API
    runner_env = json.loads(settings["TICKRUN_K8S_RUNNER_ENV"])
    assert runner_env.items() >= {
        "TICKRUN_USER_DAILY_COST_USD": "25", "TICKRUN_RUNNER_MAX_COST_USD": "1.5",
        "TICKRUN_RUNNER_MAX_TOKENS": "200000", "TICKRUN_LLM_REQUESTS_PER_MINUTE": "500"}.items()
    assert "TICKRUN_LLM_TOKENS_PER_MINUTE" not in runner_env  # empty: not set at all
    assert json.loads(runner_env["TICKRUN_LLM_PRICES"]) == {
        "my-model": {"input": 1, "cached_input": 0.25, "output": 4}}
    # The defaults set none of them, and the schema refuses what is not an amount.
    assert "TICKRUN_USER_DAILY_COST_USD" not in {(d["kind"], d["metadata"]["name"]): d for d
                                                 in render()}["ConfigMap",
                                                              "rel-tickrun-settings"]["data"]
    values.write_text(yaml.safe_dump({"llmSpend": {"userDailyCostUsd": "lots"}}))
    refused = helm("template", "rel", str(CHART), "-f", str(values), check=False)
    assert refused.returncode != 0 and "userDailyCostUsd" in refused.stderr


def test_retention_cronjob_prunes_with_the_database_secret_only_when_enabled() -> None:
    assert "CronJob" not in kinds(render())
    docs = render("--set", "retention.enabled=true", "--set", "retention.olderThan=30d",
                  "--set", "retention.schedule=5 4 * * *",
                  "--set", "retention.archive.persistentVolumeClaim=tickrun-archive")
    assert kinds(docs) == sorted([*kinds(render()), "CronJob"])
    cron = next(d for d in docs if d["kind"] == "CronJob")
    assert cron["metadata"]["name"] == "rel-tickrun-retention"
    assert cron["spec"]["schedule"] == "5 4 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["image"] == "tickrun/api:0.1.0"
    assert [*c["command"], *c["args"]] == ["python", "-m", "api.cli", "runs", "prune",
                                           "--older-than", "30d", "--archive-dir", "/archive"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    env = {v["name"]: v for v in c["env"]}
    assert set(env) == {"TICKRUN_DATABASE_URL", "TICKRUN_REDIS_URL"}
    for var in env.values():
        assert set(var) == {"name", "valueFrom"} and "secretKeyRef" in var["valueFrom"]
    assert env["TICKRUN_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "tickrun-database", "key": "url"}
    assert {"name": "archive", "mountPath": "/archive"} in c["volumeMounts"]
    assert {"name": "archive", "persistentVolumeClaim": {"claimName": "tickrun-archive"}} \
        in pod["volumes"]

    # Without a claim: no archive, and the command says so.
    docs = render("--set", "retention.enabled=true")
    cron = next(d for d in docs if d["kind"] == "CronJob")
    c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["runs", "prune", "--older-than", "90d", "--no-archive"]
    assert cron["spec"]["schedule"] == "17 3 * * *"
    assert all(m["name"] != "archive" for m in c["volumeMounts"])
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), "--set",
                                       "retention.enabled=true").stdout
    for wrong in ("retention.olderThan=soon", "retention.archive.claim=x"):
        out = helm("template", "rel", str(CHART), "--set", "retention.enabled=true",
                   "--set", wrong, check=False)
        assert out.returncode != 0, wrong


def test_the_mcp_secret_is_named_in_the_settings_only_when_given() -> None:
    def settings(*args: str) -> dict[str, Any]:
        [config] = [d for d in render(*args) if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"].endswith("-settings")]
        return dict(config["data"])

    assert "TICKRUN_K8S_MCP_SECRET" not in settings()
    assert settings("--set", "secrets.mcp.existingSecret=tickrun-mcp")[
        "TICKRUN_K8S_MCP_SECRET"] == "tickrun-mcp"
