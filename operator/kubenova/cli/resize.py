"""``kubectl nova resize NAME FLAVOR``, ``resize-confirm NAME`` and ``resize-revert NAME``.

A resize sets ``spec.flavor`` and ends in phase VerifyResize; confirming stamps
``spec.confirmResize`` (the new flavor is kept and the old host freed); reverting puts the old
flavor back in ``spec.flavor`` (``status.resize.oldFlavor``), which the operator reads as "undo
the resize that awaits an answer", so the spec always says the flavor the instance ends with.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from kubenova.cli import kube, operation, power

VERIFY_RESIZE = "VerifyResize"


def plan_resize(obj: dict[str, Any], flavor: str) -> dict[str, Any] | None:
    """The patch that asks for the resize; None when the instance has ``flavor`` already
    with nothing under way."""
    status = obj.get("status") or {}
    if (obj.get("spec") or {}).get("flavor") == flavor and not status.get("taskState"):
        return None
    return {"spec": {"flavor": flavor}}


def _awaiting(obj: dict[str, Any], verb: str) -> dict[str, Any]:
    """The resize that awaits an answer (``status.resize``); CommandError when none does."""
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    resize = status.get("resize")
    if status.get("phase") != VERIFY_RESIZE or not isinstance(resize, dict):
        raise kube.CommandError(
            f"error: cannot {verb} instance {name}: it is {status.get('phase') or 'not ready'}; "
            f"only an instance in phase {VERIFY_RESIZE} has a resize to {verb.split()[0]}"
        )
    return resize


def plan_confirm(obj: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    _awaiting(obj, "confirm the resize of")
    previous = ((obj.get("spec") or {}).get("confirmResize") or {}).get("requestedAt")
    return {"spec": {"confirmResize": {"requestedAt": power.stamp(now, previous)}}}


def plan_revert(obj: dict[str, Any]) -> dict[str, Any]:
    resize = _awaiting(obj, "revert the resize of")
    return {"spec": {"flavor": resize["oldFlavor"]}}


def run_resize(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    patch = plan_resize(kube.get_instance(cluster, options.name), options.flavor)
    if patch is None:
        raise kube.CommandError(
            f"error: instance {options.name} already has flavor {options.flavor}"
        )
    code = operation.submit(
        cluster, options.name, patch, verb="resize", done="resized", options=options
    )
    if code == 0 and not options.no_wait:
        print(
            f"confirm with `kubectl nova resize-confirm {options.name}`, or go back to the old "
            f"flavor with `kubectl nova resize-revert {options.name}`"
        )
    return code


def run_confirm(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    patch = plan_confirm(
        kube.get_instance(cluster, options.name), datetime.datetime.now(datetime.UTC)
    )
    return operation.submit(
        cluster, options.name, patch, verb="resize-confirm", done="resize confirmed",
        options=options,
    )  # fmt: skip


def run_revert(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    patch = plan_revert(kube.get_instance(cluster, options.name))
    return operation.submit(
        cluster, options.name, patch, verb="resize-revert", done="resize reverted",
        options=options,
    )  # fmt: skip


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "resize",
        parents=common,
        help="resize an instance to another flavor",
        description=(
            "Resize an instance to FLAVOR (set spec.flavor): on its host or another the "
            "scheduler picks. Waits until it is resized and awaits confirmation (phase "
            "VerifyResize)."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.add_argument("flavor", metavar="FLAVOR", help="the Flavor to resize to")
    operation.add_wait_options(parser)
    parser.set_defaults(run=run_resize)
    for verb, run, summary in (
        ("resize-confirm", run_confirm, "keep the new flavor of a resized instance"),
        ("resize-revert", run_revert, "go back to the old flavor (and host) of a resize"),
    ):
        parser = verbs.add_parser(
            verb, parents=common, help=summary, description=f"{summary[0].upper()}{summary[1:]}."
        )
        parser.add_argument("name", metavar="NAME", help="the Instance's name")
        operation.add_wait_options(parser)
        parser.set_defaults(run=run)
