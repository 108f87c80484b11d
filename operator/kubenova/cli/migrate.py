"""``kubectl nova migrate NAME [--live] [--host HOST]``: create an InstanceMigration that moves
the instance NAME (cold, or live with ``--live``) to HOST or to the host the scheduler picks,
and wait until it has Succeeded or Failed, showing a live migration's progress. Exit codes: 0
Succeeded, 1 Failed (the reason on stderr) or timed out. Interrupting the wait leaves the
migration running; ``kubectl delete`` of its object aborts it.

The InstanceMigration is owned by the Instance (collected with it) and named
``NAME-migration-<time>``, so every move has an object of its own, as KubeVirt's do.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from kubenova.cli import kube, request_object
from kubenova.k8s.resources import API_VERSION, GROUP

PLURAL = "instancemigrations"
RESOURCE = f"instancemigration.{GROUP}"
#: A cold migration copies a whole disk between hosts.
DEFAULT_TIMEOUT = "30m"


def migration_body(
    instance: str,
    instance_uid: str,
    host: str | None,
    now: datetime.datetime,
    *,
    live: bool = False,
) -> dict[str, Any]:
    """The InstanceMigration that moves ``instance`` (to ``host``, if given)."""
    spec: dict[str, Any] = {"instance": instance, "type": "Live" if live else "Cold"}
    if host:
        spec["targetHost"] = host
    suffix = now.astimezone(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return {
        "apiVersion": API_VERSION,
        "kind": "InstanceMigration",
        "metadata": {
            "name": f"{instance[:200]}-migration-{suffix}",
            "ownerReferences": [
                {"apiVersion": API_VERSION, "kind": "Instance", "name": instance,
                 "uid": instance_uid}
            ],
        },
        "spec": spec,
    }  # fmt: skip


def get_migration(cluster: kube.Cluster, name: str) -> dict[str, Any]:
    return request_object.get(cluster, PLURAL, name)


def watch_migration(
    cluster: kube.Cluster, name: str, resource_version: str, timeout_seconds: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    return request_object.watch(cluster, PLURAL, name, resource_version, timeout_seconds)


def run_migrate(
    cluster: kube.Cluster,
    options: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    instance = kube.get_instance(cluster, options.name)
    body = migration_body(
        options.name,
        instance["metadata"]["uid"],
        options.host,
        datetime.datetime.now(datetime.UTC),
        live=options.live,
    )
    created = request_object.create(cluster, PLURAL, body)
    name = created["metadata"]["name"]
    if options.no_wait:
        print(f"{RESOURCE}/{name} created", file=out)
        return 0
    ended = request_object.wait_for(
        cluster, created, resource=RESOURCE, get_object=get_migration, watch_object=watch_migration,
        timeout=options.timeout, out=out,
    )  # fmt: skip
    status = ended.get("status") or {}
    if request_object.outcome(ended) == request_object.SUCCEEDED:
        print(
            f"{RESOURCE}/{name} succeeded: instance {options.name} moved from "
            f"{status.get('sourceHost')} to {status.get('targetHost')}" + _figures(status),
            file=out,
        )
        return 0
    print(request_object.failure_line(f"migration of instance {options.name}", ended), file=err)
    return 1


def _figures(status: dict[str, Any]) -> str:
    """libvirt's figures for a live migration, as the status gives them."""
    total, downtime = status.get("totalSeconds"), status.get("downtimeMilliseconds")
    if total is None:
        return ""
    return f" in {total:.2f} s" + (f", downtime {downtime} ms" if downtime is not None else "")


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "migrate",
        parents=common,
        help="move an instance to another host",
        description=(
            "Move instance NAME to another host (an InstanceMigration). Cold: the guest is shut "
            "down, its disk copied, started on the target. --live: the running guest moves "
            "with its memory and disk, and does not stop. The target is HOST, or the host "
            "the scheduler picks. Waits until it has moved, or says why not."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.add_argument(
        "--live", action="store_true", help="move the guest while it runs (live migration)"
    )
    parser.add_argument("--host", metavar="HOST", help="the host to move it to")
    request_object.add_wait_options(parser, DEFAULT_TIMEOUT, "the move")
    parser.set_defaults(run=run_migrate)
