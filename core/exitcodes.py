"""How a runner's exit code tells its executor (a Job, or the local executor) what to do.

Shared here because the runner sets them and the controller reads them, and neither may
import the other.
"""

from __future__ import annotations

from typing import Literal

EXIT_OK = 0  # the run ended: completed or stopped, its result saved
EXIT_RETRY = 1  # a new attempt may fix it and resumes after the checkpoint
EXIT_NO_RETRY = 78  # EX_CONFIG: retrying cannot help; the Job's podFailurePolicy fails it
# A newer attempt owns the run (fencing): this one stopped writing and exits. Neither a
# failure nor a retry: the Job's podFailurePolicy ignores it.
EXIT_SUPERSEDED = 75


Verdict = Literal["ended", "retry", "fail", "superseded"]


def exit_verdict(code: int) -> Verdict:
    """What an executor does with a runner's exit code. The Job's podFailurePolicy says
    the same to Kubernetes; the local executor asks this function.

    A signal death (negative here, 128+n in a container) and exit 70 (the stop budget
    was exceeded) are retried like exit 1, within the backoff limit."""
    if code == EXIT_OK:
        return "ended"
    if code == EXIT_NO_RETRY:
        return "fail"
    if code == EXIT_SUPERSEDED:
        return "superseded"
    return "retry"
