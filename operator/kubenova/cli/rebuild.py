"""``kubectl nova rebuild NAME IMAGE``: set ``spec.image``, which rebuilds the instance where
it is (a new root disk from IMAGE, the same uuid, host and addresses), and wait for the end."""

from __future__ import annotations

import argparse
from typing import Any

from kubenova.cli import kube, operation


def plan_rebuild(obj: dict[str, Any], image: str) -> dict[str, Any] | None:
    """The patch that asks for the rebuild; None when the instance already runs ``image``
    with nothing under way (a rebuild is asked for by changing the image)."""
    status = obj.get("status") or {}
    current = (obj.get("spec") or {}).get("image")
    if current == image and not status.get("taskState"):
        return None
    return {"spec": {"image": image}}


def run_rebuild(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    obj = kube.get_instance(cluster, options.name)
    patch = plan_rebuild(obj, options.image)
    if patch is None:
        raise kube.CommandError(
            f"error: instance {options.name} already has image {options.image}: a rebuild is "
            "asked for by a new image"
        )
    return operation.submit(
        cluster, options.name, patch, verb="rebuild", done="rebuilt", options=options
    )


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "rebuild",
        parents=common,
        help="rebuild an instance from another image",
        description=(
            "Rebuild an instance where it is from IMAGE (set spec.image): a new root disk and "
            "config drive, the same uuid, host and addresses. Waits until it is rebuilt."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.add_argument("image", metavar="IMAGE", help="the Image to rebuild from")
    operation.add_wait_options(parser)
    parser.set_defaults(run=run_rebuild)
