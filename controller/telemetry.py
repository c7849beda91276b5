"""Controller metrics (tickrun_controller_*, tickrun_runs_*), Prometheus conventions."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_BY_STATUS = Gauge("tickrun_runs", "Runs by status, as the reconciler last saw them",
                       ["status"])
ADMISSION_WAIT = Histogram(
    "tickrun_run_admission_wait_seconds", "From creation to admission",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 7200))
RUN_DURATION = Histogram(
    "tickrun_run_duration_seconds", "From admission to the final status, by outcome",
    ["outcome"], buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200, 14400, 28800))
STOP_SECONDS = Histogram(
    "tickrun_run_stop_seconds", "From a stop request to the run's final status (stopped)",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 15, 20, 30, 60, 120))
RECONCILE_SECONDS = Histogram(
    "tickrun_controller_reconcile_seconds",
    "One reconcile pass: over the runs that changed, or (a resync) every active run",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
CHANGED_PASS_SECONDS = Histogram(
    "tickrun_controller_changed_pass_seconds",
    "One pass over the runs that changed (a batch from the work queue)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
RUN_CHANGES = Counter("tickrun_controller_run_changes_total",
                      "Run ids handled by passes over what changed")
RECONCILE_ERRORS = Counter("tickrun_controller_reconcile_errors_total",
                           "Reconcile passes that raised")
RUN_ERRORS = Counter("tickrun_controller_run_errors_total",
                     "Errors reconciling one run, by kind (temporary, refused, invalid)",
                     ["kind"])
EVENTS_DROPPED = Counter(
    "tickrun_controller_events_dropped_total",
    "Kubernetes Events dropped because the queue of those not yet sent was full")
RUNS_ADMITTED = Counter("tickrun_runs_admitted_total", "Runs admitted by the reconciler")
RUNS_FINALIZED = Counter("tickrun_runs_finalized_total",
                         "Runs the reconciler finalized because the runner could not",
                         ["status"])
ORPHANS_DELETED = Counter("tickrun_controller_orphan_workloads_deleted_total",
                          "Workloads deleted because no run owns them")
LEADER = Gauge("tickrun_controller_leader", "1 while this replica holds the Lease")
RUNS_HELD_FOR_SPEND = Gauge(
    "tickrun_runs_held_for_spend",
    "Queued runs waiting because their user reached the daily LLM spend limit")
SCHEDULE_FIRES = Counter(
    "tickrun_schedule_fires_total",
    "Due times of schedules handled by the leader, by outcome (fired, missed, failed)",
    ["outcome"])
