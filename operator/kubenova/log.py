"""Structured (JSON) logs that carry the request id across operator, queue and agent.

The request id lives in a context variable: the kopf handler sets it when it
starts a request, the rpc layer copies it into every message, and the consumer on
the other side sets it again before calling its handler. Every log line then
names the request it belongs to.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Iterator

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kubenova_request_id", default=None
)


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Log everything inside the block under ``request_id``."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras."""

    _RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def __init__(self, component: str, *, thread_names: bool = False) -> None:
        super().__init__()
        self.component = component
        self.thread_names = thread_names

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.thread_names:
            entry["thread"] = record.threadName
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            # Only plain extras: kopf attaches its whole settings object to every record.
            if (
                key not in self._RESERVED
                and key != "request_id"
                and not key.startswith(("_", "k8s_"))
                and isinstance(value, str | int | float | bool)
            ):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(component: str, level: str = "INFO", *, thread_names: bool = False) -> None:
    """Send every logger's records to stderr as JSON lines; ``thread_names`` adds the thread
    to each (where one process serves many hosts, the thread's name says which)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter(component, thread_names=thread_names))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs every connection step at INFO; keep its warnings only.
    logging.getLogger("pika").setLevel(logging.WARNING)
    # kopf reports every successful timer run at INFO; failures still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
