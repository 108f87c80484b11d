"""``kubectl nova evacuate NAME [--target HOST]`` and ``kubectl nova evacuate --host HOST``:
create an InstanceMigration of type Evacuate for the instance NAME, or for every instance
recorded on HOST (``status.host``; in the namespace, or in all of them with ``-A``), and wait
until each has Succeeded or Failed. Exit codes: 0 every one Succeeded, 1 one Failed or was
refused (the reason on stderr) or timed out, 2 a usage error.

An evacuation rebuilds the instance from its image on another host because its host is down:
what its disk held is lost. The operator refuses it while the host is up (migrate it instead).
Each InstanceMigration is owned by its Instance and named ``NAME-evacuation-<time>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import sys
import time
from typing import Any, TextIO, cast

from kubenova.cli import kube, request_object
from kubenova.cli.migrate import PLURAL, RESOURCE, get_migration, watch_migration
from kubenova.k8s.resources import API_VERSION, GROUP, INSTANCES, VERSION

#: A rebuild from the image: the image's download and a boot.
DEFAULT_TIMEOUT = "15m"


def evacuation_body(
    instance: str, instance_uid: str, target: str | None, now: datetime.datetime
) -> dict[str, Any]:
    """The InstanceMigration that evacuates ``instance`` (to ``target``, if given)."""
    spec: dict[str, Any] = {"instance": instance, "type": "Evacuate"}
    if target:
        spec["targetHost"] = target
    suffix = now.astimezone(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return {
        "apiVersion": API_VERSION,
        "kind": "InstanceMigration",
        "metadata": {
            "name": f"{instance[:200]}-evacuation-{suffix}",
            "ownerReferences": [
                {"apiVersion": API_VERSION, "kind": "Instance", "name": instance,
                 "uid": instance_uid}
            ],
        },
        "spec": spec,
    }  # fmt: skip


def instances_on_host(
    cluster: kube.Cluster, host: str, *, all_namespaces: bool
) -> list[tuple[str, dict[str, Any]]]:
    """(namespace, Instance) of each Instance whose status says it is on ``host``, sorted."""
    if all_namespaces:
        found = cluster.custom.list_cluster_custom_object(GROUP, VERSION, INSTANCES)
    else:
        found = cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, INSTANCES
        )
    items = cast(dict[str, Any], found).get("items") or []
    on_host = [
        (item["metadata"].get("namespace") or cluster.namespace, item)
        for item in items
        if (item.get("status") or {}).get("host") == host
    ]
    return sorted(on_host, key=lambda pair: (pair[0], pair[1]["metadata"]["name"]))


def run_evacuate(
    cluster: kube.Cluster,
    options: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if (options.name is None) == (options.host is None):
        options.usage_error("give either NAME or --host HOST")
    if options.all_namespaces and options.host is None:
        options.usage_error("-A/--all-namespaces goes with --host HOST")
    if options.host is not None:
        targets = [
            (dataclasses.replace(cluster, namespace=namespace), item)
            for namespace, item in instances_on_host(
                cluster, options.host, all_namespaces=options.all_namespaces
            )
        ]
        if not targets:
            print(f"no instances are recorded on host {options.host}", file=out)
            return 0
    else:
        targets = [(cluster, kube.get_instance(cluster, options.name))]
    now = datetime.datetime.now(datetime.UTC)
    created = []
    for where, instance in targets:
        meta = instance["metadata"]
        body = evacuation_body(meta["name"], meta["uid"], options.target, now)
        created.append((where, meta["name"], request_object.create(where, PLURAL, body)))
    if options.no_wait:
        for _where, _instance, obj in created:
            print(f"{RESOURCE}/{obj['metadata']['name']} created", file=out)
        return 0
    deadline = math.inf if options.timeout < 0 else time.monotonic() + options.timeout
    failed = 0
    for where, instance, obj in created:
        left = -1.0 if deadline == math.inf else max(0.0, deadline - time.monotonic())
        try:
            ended = request_object.wait_for(
                where, obj, resource=RESOURCE, get_object=get_migration,
                watch_object=watch_migration, timeout=left, out=out,
            )  # fmt: skip
        except kube.CommandError as exc:
            print(exc, file=err)
            failed += 1
            continue
        failed += not _report(ended, instance, out, err)
    return 1 if failed else 0


def _report(ended: dict[str, Any], instance: str, out: TextIO, err: TextIO) -> bool:
    """Print the verdict of one evacuation; whether it succeeded."""
    status = ended.get("status") or {}
    name = ended["metadata"]["name"]
    if request_object.outcome(ended) == request_object.SUCCEEDED:
        print(
            f"{RESOURCE}/{name} succeeded: instance {instance} rebuilt on "
            f"{status.get('targetHost')} (its host {status.get('sourceHost')} is down)",
            file=out,
        )
        return True
    print(request_object.failure_line(f"evacuation of instance {instance}", ended), file=err)
    return False


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "evacuate",
        parents=common,
        help="rebuild the instances of a host that is down on other hosts",
        description=(
            "Rebuild instance NAME, or every instance on HOST (--host), on another host "
            "because its host is down (an InstanceMigration of type Evacuate). It is rebuilt "
            "from its image: what its disk held is lost. Refused while the host is up. The "
            "target is --target, or the host the scheduler picks. Waits for each, or says why "
            "not."
        ),
    )
    parser.add_argument("name", metavar="NAME", nargs="?", help="the Instance's name")
    parser.add_argument("--host", metavar="HOST", help="evacuate every instance on this host")
    parser.add_argument("--target", metavar="HOST", help="the host to rebuild on")
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="with --host: the instances of every namespace",
    )
    request_object.add_wait_options(parser, DEFAULT_TIMEOUT, "the evacuation")
    parser.set_defaults(run=run_evacuate, usage_error=parser.error)
