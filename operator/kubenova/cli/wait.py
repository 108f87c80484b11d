"""Waiting until the operator has acted on a spec change, showing its progress.

A change is done when the operator has seen it and finished with it: ``status.observedGeneration``
has reached the generation the patch produced, no task runs (``status.taskState`` is empty), and
the ``Synced`` condition speaks of that generation with a verdict (not ``InProgress``). Its
status then says whether the change was applied (True) or refused or failed (False, with the
reason and a message that says why).

The Instance is watched from the resourceVersion of the patch's answer, so no change between
the patch and the watch is missed; when the watch ends or breaks before the verdict, the object
is polled until the deadline.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, TextIO

import urllib3
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import durations, kube

SYNCED = "Synced"
IN_PROGRESS = "InProgress"
#: Seconds between two reads once the watch has ended.
POLL_INTERVAL = 2.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the status says of the change: not yet decided, applied, or not applied."""

    done: bool
    applied: bool = False
    reason: str = ""
    message: str = ""


WAITING = Verdict(done=False)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def synced_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == SYNCED:
            return condition
    return None


def assess(obj: dict[str, Any], generation: int) -> Verdict:
    """The verdict of ``obj``'s status on the spec at ``generation``."""
    status = obj.get("status") or {}
    if _int(status.get("observedGeneration")) < generation or status.get("taskState"):
        return WAITING
    condition = synced_condition(obj)
    if condition is None or _int(condition.get("observedGeneration")) < generation:
        return WAITING
    reason = str(condition.get("reason") or "")
    if reason == IN_PROGRESS or condition.get("status") not in ("True", "False"):
        return WAITING
    message = str(condition.get("message") or "")
    if condition["status"] == "True":
        return Verdict(done=True, applied=True, reason=reason, message=message)
    return Verdict(done=True, applied=False, reason=reason, message=message)


def state(obj: dict[str, Any]) -> str:
    """What the instance is doing: its phase, and the task under way (``Running →
    powering-off``)."""
    status = obj.get("status") or {}
    phase = status.get("phase") or "(no status yet)"
    task = status.get("taskState")
    return f"{phase} → {task}" if task else str(phase)


def progress(obj: dict[str, Any]) -> str:
    """One line of progress: ``web-1: Running → powering-off``."""
    return f"{obj['metadata']['name']}: {state(obj)}"


class WaitTimeout(kube.CommandError):
    """The deadline passed before the verdict."""


class _Progress:
    """Prints a progress line whenever it differs from the last one."""

    def __init__(self, generation: int, out: TextIO) -> None:
        self.generation = generation
        self.out = out
        self.last = ""

    def observe(self, obj: dict[str, Any]) -> Verdict:
        now = state(obj)
        if now != self.last:
            print(progress(obj), file=self.out, flush=True)
            self.last = now
        return assess(obj, self.generation)


# Failures of one request that the next may not repeat: the connection, a busy server.
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, k8s_exceptions.ApiException):
        return exc.status in _TRANSIENT_STATUS
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def wait_for(
    cluster: kube.Cluster,
    patched: dict[str, Any],
    *,
    verb: str,
    timeout: float,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Follow the Instance from ``patched`` (the patch's answer) until the verdict on its
    generation; :class:`WaitTimeout` after ``timeout`` seconds (negative: no limit)."""
    name = patched["metadata"]["name"]
    tracker = _Progress(_int(patched["metadata"].get("generation")), out)
    verdict = tracker.observe(patched)
    if verdict.done:
        return verdict
    deadline = None if timeout < 0 else clock() + timeout

    def remaining() -> float:
        return math.inf if deadline is None else deadline - clock()

    def timed_out(last_error: BaseException | None) -> WaitTimeout:
        text = (
            f"error: timed out after {durations.format_seconds(timeout)} waiting for "
            f"instance {name} to {verb} (last seen: {tracker.last})"
        )
        if last_error is not None:
            text += f"; last error: {kube.describe_error(last_error, cluster.server)}"
        return WaitTimeout(text)

    if remaining() >= 1:
        # The server ends the watch at the deadline; with none, after an hour (then: polling).
        seconds = 3600 if deadline is None else math.ceil(remaining())
        try:
            for event, obj in kube.watch_instance(
                cluster, name, patched["metadata"]["resourceVersion"], seconds
            ):
                if event == "DELETED":
                    raise kube.CommandError(f"error: instance {name} was deleted while waiting")
                if event not in ("ADDED", "MODIFIED"):
                    continue
                verdict = tracker.observe(obj)
                if verdict.done:
                    return verdict
        except (k8s_exceptions.ApiException, urllib3.exceptions.HTTPError, OSError):
            pass  # a watch that is refused or breaks: polling below still gets the verdict

    last_error: BaseException | None = None
    while True:
        try:
            verdict = tracker.observe(kube.get_instance(cluster, name))
            last_error = None
        except (k8s_exceptions.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            if kube.not_found(exc):
                raise kube.CommandError(
                    f"error: instance {name} was deleted while waiting"
                ) from None
            if not _transient(exc):
                raise
            last_error = exc
        else:
            if verdict.done:
                return verdict
        left = remaining()
        if left <= 0:
            raise timed_out(last_error)
        sleep(min(POLL_INTERVAL, left))
