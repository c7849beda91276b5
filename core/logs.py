"""One JSON object per log line, with run_id and user_id when a run is in hand.

The ids travel in context variables, not globals, so two runs in one process (the API's
local executor, tests) never label each other's lines.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

run_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("run_id", default=None)
user_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)


class RunContextFilter(logging.Filter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        # uvicorn's copy of the message with terminal colour codes: noise in JSON lines.
        record.__dict__.pop("color_message", None)
        if not hasattr(record, "run_id"):
            record.run_id = run_id_var.get()
        if not hasattr(record, "user_id"):
            record.user_id = user_id_var.get()
        return True


def configure_logging(component: str, *, level: str = "INFO", json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RunContextFilter(component))
    if json:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(component)s %(run_id)s %(user_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request INFO lines from HTTP clients (the OpenAI client uses httpx2) come from
    # threads without the run context: one line per LLM call, without run_id.
    # (mcp: two INFO lines per outside tool call)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "urllib3", "kubernetes", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def run_context(run_id: int, user_id: str | None) -> Iterator[None]:
    run_token = run_id_var.set(run_id)
    user_token = user_id_var.set(user_id)
    try:
        yield
    finally:
        run_id_var.reset(run_token)
        user_id_var.reset(user_token)
