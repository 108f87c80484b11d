"""The road of the verbs that create a request object (an InstanceSnapshot, an
InstanceMigration) and wait for its verdict: ``status.phase`` Succeeded or Failed, with a
``Ready`` condition that says why.

Waiting follows the object from the resourceVersion of the create's answer, so nothing between
the create and the watch is missed; a watch that ends or breaks before the verdict gives way to
polling until the deadline.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO, cast

import urllib3
from kubernetes import watch as k8s_watch
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import durations, kube
from kubenova.k8s.resources import GROUP, VERSION

SUCCEEDED = "Succeeded"
FAILED = "Failed"
POLL_INTERVAL = 2.0
_REQUEST_TIMEOUT = (10.0, 60.0)

Getter = Callable[[kube.Cluster, str], dict[str, Any]]
Watcher = Callable[[kube.Cluster, str, str, int], Iterator[tuple[str, dict[str, Any]]]]


def add_wait_options(parser: argparse.ArgumentParser, default_timeout: str, what: str) -> None:
    """``--no-wait`` and ``--timeout`` of a verb that waits for its request's verdict
    (``what``: "the snapshot")."""
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help=f"return once the request is created, without waiting for {what}",
    )
    parser.add_argument(
        "--timeout",
        type=durations.argument,
        default=durations.parse(default_timeout),
        metavar="DURATION",
        help=(
            f"how long to wait for {what}, e.g. 30s, 5m, 1h (default {default_timeout}; "
            "0 checks once, a negative duration waits without limit)"
        ),
    )


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition
    return {}


def progress(obj: dict[str, Any]) -> str:
    """One line of progress: ``snap-1: InProgress (taking a snapshot of ...)``, or with the
    share done when the status says it (a live migration's): ``move-1: Running 40%``."""
    status = obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    percent = (status.get("progress") or {}).get("percent")
    done = f" {percent}%" if percent is not None and phase == "Running" else ""
    message = ready_condition(obj).get("message")
    return f"{obj['metadata']['name']}: {phase}{done}" + (f" ({message})" if message else "")


def failure_line(what: str, obj: dict[str, Any]) -> str:
    """``error: WHAT failed (REASON): MESSAGE`` for a request that ended Failed: its status's
    message, else its Ready condition's (the reason left out when it only says Failed). A
    request the operator refused in the state it found (InvalidState) says "refused", as the
    power verbs do."""
    status = obj.get("status") or {}
    condition = ready_condition(obj)
    reason = condition.get("reason")
    message = status.get("message") or condition.get("message") or "the operator gave no reason"
    how = "refused" if reason == "InvalidState" else "failed"
    because = f" ({reason})" if reason and reason != "Failed" else ""
    return f"error: {what} {how}{because}: {message}"


def outcome(obj: dict[str, Any]) -> str | None:
    """Succeeded or Failed once the request has ended; None before."""
    phase = (obj.get("status") or {}).get("phase")
    return phase if phase in (SUCCEEDED, FAILED) else None


def create(cluster: kube.Cluster, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return cast(
            dict[str, Any],
            cluster.custom.create_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, plural, body, _request_timeout=_REQUEST_TIMEOUT
            ),
        )
    except k8s_exceptions.ApiException as exc:
        if exc.status == 409:
            raise kube.CommandError(
                f"error: {plural[:-1]}.{GROUP}/{body['metadata']['name']} exists already in "
                f"namespace {cluster.namespace}"
            ) from None
        raise


def get(cluster: kube.Cluster, plural: str, name: str) -> dict[str, Any]:
    return cast(
        dict[str, Any],
        cluster.custom.get_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, plural, name, _request_timeout=_REQUEST_TIMEOUT
        ),
    )


def watch(
    cluster: kube.Cluster, plural: str, name: str, resource_version: str, timeout_seconds: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    watcher = k8s_watch.Watch()  # type: ignore[no-untyped-call]
    stream = watcher.stream(  # type: ignore[no-untyped-call]
        cluster.custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        cluster.namespace,
        plural,
        field_selector=f"metadata.name={name}",
        resource_version=resource_version,
        timeout_seconds=max(1, timeout_seconds),
        _request_timeout=(_REQUEST_TIMEOUT[0], timeout_seconds + 10.0),
    )
    try:
        for event in stream:
            obj = event.get("raw_object")
            if isinstance(obj, dict):
                yield str(event.get("type")), obj
    finally:
        watcher.stop()  # type: ignore[no-untyped-call]


def wait_for(
    cluster: kube.Cluster,
    created: dict[str, Any],
    *,
    resource: str,
    get_object: Getter,
    watch_object: Watcher,
    timeout: float,
    out: TextIO,
    poll_interval: float = POLL_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Follow the request object from ``created`` until it has ended; the object then.
    ``resource`` names its kind in messages (``instancesnapshot.compute.kubenova.io``).
    Raises :class:`kube.CommandError` when it is deleted or the deadline passes."""
    name = created["metadata"]["name"]
    last = ""

    def observe(obj: dict[str, Any]) -> bool:
        nonlocal last
        line = progress(obj)
        if line != last:
            print(line, file=out, flush=True)
            last = line
        return outcome(obj) is not None

    if observe(created):
        return created
    deadline = None if timeout < 0 else clock() + timeout

    def remaining() -> float:
        return math.inf if deadline is None else deadline - clock()

    if remaining() >= 1:
        seconds = 3600 if deadline is None else math.ceil(remaining())
        try:
            for event, obj in watch_object(
                cluster, name, created["metadata"]["resourceVersion"], seconds
            ):
                if event == "DELETED":
                    raise kube.CommandError(f"error: {resource}/{name} was deleted while waiting")
                if event in ("ADDED", "MODIFIED") and observe(obj):
                    return obj
        except (k8s_exceptions.ApiException, urllib3.exceptions.HTTPError, OSError):
            pass  # polling below still gets the verdict
    while True:
        try:
            obj = get_object(cluster, name)
        except k8s_exceptions.ApiException as exc:
            if kube.not_found(exc):
                raise kube.CommandError(
                    f"error: {resource}/{name} was deleted while waiting"
                ) from None
            raise
        if observe(obj):
            return obj
        left = remaining()
        if left <= 0:
            raise kube.CommandError(
                f"error: timed out after {durations.format_seconds(timeout)} waiting for "
                f"{resource}/{name} (last seen: {last})"
            )
        sleep(min(poll_interval, left))
