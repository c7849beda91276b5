"""Build the batch/v1 Job of a run: one plain function, no YAML templating.

The run id is the only run-specific input of the container; everything else the
runner loads from the database by it. Secrets reach the pod only through secretKeyRef.
The Job's retry policy and the runner's SIGTERM meaning are decided together: exit 78
(bad run) fails the Job at once, disruptions do not count against backoffLimit, and
podReplacementPolicy Failed keeps a replacement from running beside a pod still saving.
"""

from __future__ import annotations

import re
from typing import Any

from controller.kubernetes.settings import KubernetesSettings, SecretRef
from core.exitcodes import EXIT_NO_RETRY, EXIT_SUPERSEDED
from core.live_options import Broker
from core.records import Run

APP_LABEL = "app.kubernetes.io/name"
RUN_APP = "tickrun-run"
MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_ID = "tickrun.io/run-id"
USER_ID = "tickrun.io/user-id"
MODEL_ID = "tickrun.io/model-id"
BATCH_ID = "tickrun.io/batch-id"
SCHEDULE_ID = "tickrun.io/schedule-id"
LIVE = "tickrun.io/live"  # a live run's book: sim or alpaca_paper
CONTAINER = "runner"
RUN_SELECTOR = f"{APP_LABEL}={RUN_APP},{MANAGED_BY}=tickrun"

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.\-]")
_SECRET_NAME = re.compile(r"[^a-z0-9.\-]")


def job_name(run_id: int) -> str:
    return f"tickrun-run-{run_id}"


def label_value(value: str) -> str:
    """A valid label value: 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends."""
    cleaned = _LABEL_VALUE.sub("_", value)[:63]
    return cleaned.strip("_.-")


def run_labels(run: Run) -> dict[str, str]:
    labels = {
        APP_LABEL: RUN_APP,
        MANAGED_BY: "tickrun",
        RUN_ID: str(run.id),
        USER_ID: label_value(run.user_id),
        MODEL_ID: str(run.model_id),
    }
    # `kubectl get jobs -l tickrun.io/schedule-id=3`: what a schedule or batch made.
    if run.batch_id is not None:
        labels[BATCH_ID] = str(run.batch_id)
    if run.schedule_id is not None:
        labels[SCHEDULE_ID] = str(run.schedule_id)
    if run.spec.live is not None:
        labels[LIVE] = run.spec.live.broker.value
    return labels


def broker_secret_name(prefix: str, user_id: str) -> str:
    """The Secret holding a user's broker keys: the prefix and the user id, as a valid
    object name (lower case [a-z0-9.-], at most 253 characters)."""
    name = _SECRET_NAME.sub("-", f"{prefix}{user_id}".lower())[:253]
    return name.strip(".-")


def _trades_at_broker(run: Run) -> bool:
    return run.spec.live is not None and run.spec.live.broker is Broker.ALPACA_PAPER


def run_annotations(run: Run) -> dict[str, str]:
    spec = run.spec
    notes = {"tickrun.io/mode": spec.mode.value, "tickrun.io/symbols": ",".join(spec.symbols),
             "tickrun.io/user-id": run.user_id}
    if spec.date is not None:
        notes["tickrun.io/date"] = spec.date.isoformat()
    else:
        notes["tickrun.io/start"] = spec.first_day.isoformat()
        notes["tickrun.io/end"] = spec.last_day.isoformat()
    return notes


def _secret_env(name: str, ref: SecretRef) -> dict[str, Any]:
    selector: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if ref.optional:
        selector["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": selector}}


def runner_env(settings: KubernetesSettings) -> list[dict[str, Any]]:
    env = [_secret_env("TICKRUN_DATABASE_URL", settings.database_secret)]
    if settings.redis_secret is not None:
        env.append(_secret_env("TICKRUN_REDIS_URL", settings.redis_secret))
    if settings.llm_secret is not None:
        env.append(_secret_env("TICKRUN_LLM_API_KEY", settings.llm_secret))
    for name, ref in (("TICKRUN_POLYGON_API_KEY", settings.polygon_api_key_secret),
                      ("TICKRUN_ALPACA_API_KEY_ID", settings.alpaca_api_key_id_secret),
                      ("TICKRUN_ALPACA_API_SECRET_KEY", settings.alpaca_api_secret_key_secret)):
        if ref is not None:
            env.append(_secret_env(name, ref))
    # Non-secret settings (market data base URLs, feed, provider...) come in runner_env.
    env += [{"name": k, "value": v} for k, v in sorted(settings.runner_env.items())]
    if settings.runner_metrics_port:
        env.append({"name": "TICKRUN_RUNNER_METRICS_PORT",
                    "value": str(settings.runner_metrics_port)})
    return env


def runner_container(run: Run, settings: KubernetesSettings) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.runner_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "runner"],
        "args": ["--run-id", str(run.id)],
        "env": runner_env(settings),
        "resources": settings.resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if settings.runner_metrics_port:
        container["ports"] = [{"name": "metrics", "containerPort": settings.runner_metrics_port}]
    env_from: list[dict[str, Any]] = []
    if settings.mcp_secret:
        # MCP servers' header values: a model names the MCP_* variable, never the value.
        env_from.append({"secretRef": {"name": settings.mcp_secret, "optional": True}})
    if _trades_at_broker(run):
        # The run's user's own paper keys (TICKRUN_BROKER_*), in this user's pods only;
        # not optional: a pod without them never starts (the run fails with the reason).
        env_from.append({"secretRef": {"name": broker_secret_name(
            settings.broker_secret_prefix, run.user_id)}})
    if env_from:
        container["envFrom"] = env_from
    return container


def build_job(run: Run, settings: KubernetesSettings) -> dict[str, Any]:
    labels = run_labels(run)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_period_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [runner_container(run, settings)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if settings.node_selector:
        pod_spec["nodeSelector"] = settings.node_selector
    if settings.tolerations:
        pod_spec["tolerations"] = settings.tolerations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run.id),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": run_annotations(run),
        },
        "spec": {
            "suspend": True,  # admitted later by the controller
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.active_deadline_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {"rules": [
                {"action": "FailJob",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                 "values": [EXIT_NO_RETRY]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                # Superseded by a newer attempt (fencing): not a failure of the run.
                {"action": "Ignore",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                 "values": [EXIT_SUPERSEDED]}},
            ]},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
