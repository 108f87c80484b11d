"""``kubectl nova snapshot NAME IMAGE``: create an InstanceSnapshot of the instance NAME that
makes the Image IMAGE, and wait until it has Succeeded or Failed.

The InstanceSnapshot is named after the Image (one Image, one request) and owned by the
Instance, so it goes when the Instance goes (the Image stays). Waiting is the road of every
request object (:mod:`kubenova.cli.request_object`). Exit codes: 0 Succeeded, 1 Failed (the
reason and message on stderr) or timed out.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from kubenova.cli import kube, request_object
from kubenova.cli.request_object import SUCCEEDED, outcome
from kubenova.k8s.resources import API_VERSION, GROUP

PLURAL = "instancesnapshots"
RESOURCE = f"instancesnapshot.{GROUP}"
#: Snapshots copy and upload a whole disk: longer than a power operation.
DEFAULT_TIMEOUT = "30m"
POLL_INTERVAL = request_object.POLL_INTERVAL


def snapshot_body(instance: str, image: str, instance_uid: str) -> dict[str, Any]:
    """The InstanceSnapshot that asks for ``image`` to be made from ``instance``, owned by the
    Instance (collected with it; the Image is not)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "InstanceSnapshot",
        "metadata": {
            "name": image,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Instance",
                    "name": instance,
                    "uid": instance_uid,
                }
            ],
        },
        "spec": {"instance": instance, "imageName": image},
    }


def failure_message(instance: str, obj: dict[str, Any]) -> str:
    return request_object.failure_line(f"snapshot of instance {instance}", obj)


def success_message(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    return (
        f"{RESOURCE}/{obj['metadata']['name']} succeeded: image {status.get('imageName')} "
        f"(sha256 {status.get('sha256')}, {status.get('sizeBytes')} bytes)"
    )


def create(cluster: kube.Cluster, body: dict[str, Any]) -> dict[str, Any]:
    return request_object.create(cluster, PLURAL, body)


def get(cluster: kube.Cluster, name: str) -> dict[str, Any]:
    return request_object.get(cluster, PLURAL, name)


def watch(
    cluster: kube.Cluster, name: str, resource_version: str, timeout_seconds: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    return request_object.watch(cluster, PLURAL, name, resource_version, timeout_seconds)


def wait_for(
    cluster: kube.Cluster,
    created: dict[str, Any],
    *,
    timeout: float,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Follow the InstanceSnapshot from ``created`` until it has ended; the object then."""
    return request_object.wait_for(
        cluster, created, resource=RESOURCE, get_object=get, watch_object=watch,
        timeout=timeout, out=out, poll_interval=POLL_INTERVAL, clock=clock, sleep=sleep,
    )  # fmt: skip


def run_snapshot(
    cluster: kube.Cluster,
    options: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    instance = kube.get_instance(cluster, options.name)
    created = create(
        cluster, snapshot_body(options.name, options.image, instance["metadata"]["uid"])
    )
    if options.no_wait:
        print(f"{RESOURCE}/{options.image} created", file=out)
        return 0
    ended = wait_for(cluster, created, timeout=options.timeout, out=out)
    if outcome(ended) == SUCCEEDED:
        print(success_message(ended), file=out)
        return 0
    print(failure_message(options.name, ended), file=err)
    return 1


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "snapshot",
        parents=common,
        help="make an Image of an instance's root disk",
        description=(
            "Snapshot the root disk of instance NAME into a new Image IMAGE (an "
            "InstanceSnapshot named IMAGE). A running guest is paused for a moment while its "
            "disk is copied. Waits until the Image is made, or says why it is not."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.add_argument("image", metavar="IMAGE-NAME", help="the Image to make")
    request_object.add_wait_options(parser, DEFAULT_TIMEOUT, "the snapshot")
    parser.set_defaults(run=run_snapshot)
