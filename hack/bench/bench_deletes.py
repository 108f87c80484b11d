"""The scheduler benchmark's delete side: deleting its instances (one call each, timed until
a watch sees them gone), the cleanup of a run's namespace, and the removal of its Flavor."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from typing import Any

import benchlib
from benchlib import log
from instance_watch import InstanceWatch


def delete_each(custom: Any, namespace: str, names: Sequence[str], workers: int) -> None:
    """Delete ``names`` one call each from ``workers`` threads, as a client deleting them all
    does (one collection delete of 10,000 outlasts the apiserver's request timeout); a name
    already gone is fine, another refusal is logged for the cleanup to try again."""
    from kubernetes.client import exceptions

    def delete(name: str) -> None:
        try:
            custom.delete_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, namespace, "instances", name
            )
        except exceptions.ApiException as exc:
            if exc.status != 404:
                log(f"deleting {name} failed ({exc.status}); the cleanup tries again")

    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="delete") as pool:
        list(pool.map(delete, names))


def timed_delete(
    custom: Any,
    watch: InstanceWatch,
    namespace: str,
    names: Sequence[str],
    timeout: float,
    workers: int,
) -> tuple[int, float]:
    """Delete ``names`` (:func:`delete_each`) and wait until the watch has seen them gone:
    (how many went, seconds from the first call sent to the last one gone, or to the
    timeout)."""
    wanted = set(names)
    sent = time.monotonic()
    delete_each(custom, namespace, names, workers)
    deadline = sent + timeout
    last_report = sent
    while True:
        gone = {name: at for name, at in watch.gone().items() if name in wanted}
        now = time.monotonic()
        if len(gone) == len(wanted):
            return len(gone), max(gone.values(), default=sent) - sent
        if now >= deadline:
            log(f"{len(wanted) - len(gone)} instances not gone {timeout:.0f}s after the delete")
            return len(gone), now - sent
        if now - last_report > 10:
            log(f"{len(gone)}/{len(wanted)} deleted")
            last_report = now
        time.sleep(0.2)


def cleanup(custom: Any, core: Any, namespace: str, timeout: float) -> bool:
    """Delete the namespace's instances (waiting until they are gone), then the namespace."""
    from kubernetes.client import exceptions

    started = time.monotonic()
    try:
        custom.delete_collection_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, namespace, "instances"
        )
    except exceptions.ApiException as exc:
        if exc.status is None or exc.status < 500:
            if exc.status != 404:
                raise
        else:
            # Thousands outlast the apiserver's request timeout: one call each instead.
            log(f"deleting the namespace's instances failed ({exc.status}); one by one")
            names = [
                item["metadata"]["name"]
                for item in custom.list_namespaced_custom_object(
                    benchlib.GROUP, benchlib.VERSION, namespace, "instances"
                ).get("items", [])
            ]
            delete_each(custom, namespace, names, 16)
    deadline = started + timeout
    left: list[Any] = []
    while time.monotonic() < deadline:
        left = custom.list_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, namespace, "instances"
        ).get("items", [])
        if not left:
            break
        time.sleep(1)
    if left:
        log(f"{len(left)} instances are still there after {timeout:.0f}s")
        return False
    log(f"instances deleted in {time.monotonic() - started:.1f}s")
    # Without a namespace controller the namespace stays Terminating, empty; deleting it
    # still keeps it from being reused.
    core.delete_namespace(namespace)
    return True


def cleanup_flavor(custom: Any, flavor: str) -> None:
    """Delete the Flavor ``flavor``; one already gone is fine."""
    from kubernetes.client import exceptions

    try:
        custom.delete_cluster_custom_object(benchlib.GROUP, benchlib.VERSION, "flavors", flavor)
    except exceptions.ApiException as exc:
        if exc.status != 404:
            raise
