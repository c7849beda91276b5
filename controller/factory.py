"""Build the executor the settings ask for."""

from __future__ import annotations

from controller.executor import Executor
from controller.kubernetes.settings import KubernetesSettings
from controller.local import LocalExecutor
from controller.settings import ControllerSettings
from core.settings import CoreSettings


def open_executor(settings: ControllerSettings, core: CoreSettings,
                  k8s: KubernetesSettings | None = None) -> Executor:
    if settings.executor == "kubernetes":
        from controller.kubernetes.executor import KubernetesExecutor

        if k8s is None:
            raise ValueError("the Kubernetes executor needs its settings (TICKRUN_K8S_*)")
        executor: Executor = KubernetesExecutor(k8s)
        return executor
    env = {"TICKRUN_DATABASE_URL": core.database_url.get_secret_value()}
    if core.redis_url is not None:
        env["TICKRUN_REDIS_URL"] = core.redis_url.get_secret_value()
    return LocalExecutor(env, log_dir=settings.local_log_dir,
                         grace_seconds=settings.stop_grace_seconds,
                         backoff_limit=settings.local_backoff_limit)
