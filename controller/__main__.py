"""`python -m controller`: the reconciler against Kubernetes, one leader among replicas.

Every replica keeps its informer (Jobs and Pods watches) warm; only the Lease holder
reconciles, so a failover within the lease duration resumes with a synced cache.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

from kubernetes import client
from prometheus_client import start_http_server

from controller import telemetry
from controller.kubernetes.executor import KubernetesExecutor
from controller.kubernetes.leader import LeaseElector
from controller.kubernetes.settings import KubernetesSettings
from controller.reconciler import Limits, Notify, Reconciler
from controller.scheduler import NotifySchedule
from controller.settings import ControllerSettings
from core.environment import check_environment, read_settings, settings_or_exit
from core.eventlog import open_event_log
from core.logs import configure_logging
from core.records import Run, Schedule
from core.settings import CoreSettings
from core.signals import on_signals
from core.spend import SpendSettings
from core.store import open_store

log = logging.getLogger("controller")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller")
    parser.add_argument("--metrics-port", type=int, default=9100)
    parser.add_argument("--identity", default=os.environ.get("POD_NAME") or socket.gethostname())
    args = parser.parse_args(argv)
    core, ctl, k8s, spend = settings_or_exit("controller", _read_settings)
    configure_logging("controller", level=core.log_level)
    stop = threading.Event()
    _stop_on_signals(stop)
    start_http_server(args.metrics_port)

    store = open_store(core.database_url.get_secret_value(), pool_size=core.db_pool_size)
    events = open_event_log(core)
    executor = KubernetesExecutor(k8s, component="tickrun-controller", instance=args.identity)
    limits = Limits(ctl.per_user_limit, ctl.global_limit,
                    spend.user_daily_cost_usd)
    reconciler = Reconciler(store, events, executor, limits,
                            lost_grace_seconds=ctl.lost_grace_seconds,
                            notify=_notifier(executor),
                            notify_schedule=_schedule_notifier(executor, k8s.lease_name))
    executor.start_informer(stop)
    # A Job the API could not make: told at once, it is made by the next pass.
    threading.Thread(target=store.listen_for_controller, args=(stop, reconciler.wake.set),
                     name="controller-channel", daemon=True).start()
    elector = LeaseElector(client_coordination(executor), namespace=k8s.namespace,
                           name=k8s.lease_name, identity=args.identity,
                           duration=k8s.lease_duration_seconds, renew=k8s.lease_renew_seconds)
    threading.Thread(target=elector.run, args=(stop, _on_leadership(reconciler.wake)),
                     name="lease", daemon=True).start()
    log.info("controller %s watching namespace %s", args.identity, k8s.namespace)
    reconciler.run_forever(stop, interval=ctl.resync_seconds, active=elector.is_leader)
    executor.close()
    store.close()
    events.close()
    return 0


def _read_settings() -> tuple[CoreSettings, ControllerSettings, KubernetesSettings,
                              SpendSettings]:
    check_environment()
    return (read_settings(CoreSettings), read_settings(ControllerSettings),
            read_settings(KubernetesSettings), read_settings(SpendSettings))


def client_coordination(executor: KubernetesExecutor) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(executor.api)


def _notifier(executor: KubernetesExecutor) -> Notify:
    def notify(run: Run, reason: str, message: str) -> None:
        executor.record(run.id, reason, message, warning="failed" in message)
    return notify


def _schedule_notifier(executor: KubernetesExecutor, lease: str) -> NotifySchedule:
    """A fire that made a run: an Event on its Job; one that did not: on the Lease."""
    def notify(schedule: Schedule, run: Run | None, reason: str, message: str) -> None:
        if run is not None:
            executor.record(run.id, reason, message)
        else:
            executor.record_on_lease(lease, reason, message, warning=True)
    return notify


def _on_leadership(wake: threading.Event) -> Callable[[bool], None]:
    """Taken: a full pass at once; lost: the loop stops waiting and steps aside."""
    def changed(held: bool) -> None:
        telemetry.LEADER.set(1 if held else 0)
        wake.set()
    return changed


def _stop_on_signals(stop: threading.Event) -> None:
    """On core.signals' thread: setting the event inside the interrupted main thread,
    which may be waiting on that same event, could deadlock it."""
    def handle(sig: signal.Signals) -> None:
        log.info("%s: stopping", sig.name)
        stop.set()
    on_signals(handle)


if __name__ == "__main__":
    sys.exit(main())
