"""The test cluster's set-up running in the background of `make test`.

scripts/run-tests.sh starts `make cluster-up cluster-images` beside the suite and names
its log and status files in TICKRUN_CLUSTER_SETUP_LOG / _STATUS; the status file
appears, holding the exit code, once the set-up ended. Outside `make test` (no such
variables) the cluster is whatever `make cluster-up` left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# A fresh machine builds Kubernetes from source (minutes on two cores), then the images.
SETUP_DEADLINE_SECONDS = float(os.environ.get("TICKRUN_CLUSTER_SETUP_TIMEOUT", "2700"))

_outcome: str | None = None  # None: not waited for yet; "": ready; else why not


def wait_for_cluster_setup() -> None:
    """Waits (once per process) for the background set-up to end; its failure is kept
    for `cluster_setup_failure`, so the cluster fixture fails with the log's tail."""
    global _outcome
    status = os.environ.get("TICKRUN_CLUSTER_SETUP_STATUS")
    if _outcome is not None or not status:
        return
    path, deadline = Path(status), time.monotonic() + SETUP_DEADLINE_SECONDS
    started = time.monotonic()
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(1)
    if not path.is_file():
        _outcome = f"the test cluster's set-up did not end in {SETUP_DEADLINE_SECONDS:.0f}s"
    elif (code := path.read_text().strip()) != "0":
        _outcome = f"the test cluster's set-up failed (exit {code})"
    else:
        _outcome = ""
        waited = time.monotonic() - started
        if waited > 1:
            print(f"waited {waited:.0f}s for the test cluster's set-up", flush=True)
    if _outcome:
        _outcome += ":\n" + _log_tail()


def cluster_setup_failure() -> str | None:
    return _outcome or None


def _log_tail(lines: int = 40) -> str:
    log = os.environ.get("TICKRUN_CLUSTER_SETUP_LOG")
    if not log or not Path(log).is_file():
        return "(no set-up log)"
    return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
