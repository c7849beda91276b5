"""How a runner's exit code tells its executor (a Job, or the local executor) what to do.

Shared here because the runner sets them and the controller reads them, and neither may
import the other.
"""

from __future__ import annotations

EXIT_OK = 0  # the run ended: completed or stopped, its result saved
EXIT_RETRY = 1  # a new attempt may fix it and resumes after the checkpoint
EXIT_NO_RETRY = 78  # EX_CONFIG: retrying cannot help; the Job's podFailurePolicy fails it
