"""DescribeInstances: the Instances of the access key's namespace, and its instances terminated
lately (:mod:`terminated`), by id, by filter, and a page at a time.

Both kinds are listed together in the order of pages (:func:`instance_filters.order_key`), so
filters, MaxResults and NextToken apply to terminated instances as to live ones
(``instance-state-name=terminated`` finds them). An Instance object still there wins over a
deleted record of the same uid: it is still shutting down.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from kubenova.ec2 import filters, ids, instance_filters, terminated, views
from kubenova.ec2.context import Context
from kubenova.scheduler import host_state


class _Listed(NamedTuple):
    key: tuple[str, str]
    reservation: str
    view: dict[str, Any]


def describe_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    wanted = [str(value) for value in params.get("InstanceIds") or []]
    for value in wanted:
        instance_filters.require_instance_id(value)
    size = instance_filters.page_size(params)
    parsed = instance_filters.parse_filters(params.get("Filters"))
    after = (
        instance_filters.after_token(str(params["NextToken"])) if params.get("NextToken") else None
    )
    listed = _listed(ctx, wanted)
    by_id = {entry.view["InstanceId"]: entry for entry in listed}
    if wanted:
        missing = [value for value in wanted if value not in by_id]
        if missing:
            raise instance_filters.not_found(missing)
    chosen: list[_Listed] = []
    for instance_id, entry in by_id.items():
        if wanted and instance_id not in wanted:
            continue
        if after is not None and entry.key <= after:
            continue
        if filters.passes(entry.view, parsed):
            chosen.append(entry)
    output: dict[str, Any] = {}
    if size is not None and len(chosen) > size:
        chosen = chosen[:size]
        output["NextToken"] = instance_filters.token_of(chosen[-1].key)
    output["Reservations"] = _reservations(ctx, chosen)
    return output


def _listed(ctx: Context, wanted: list[str]) -> list[_Listed]:
    """The namespace's instances, live and terminated, in the order of pages; the database is
    not asked when every id ``wanted`` is a live one."""
    objects = ctx.cluster.instances(ctx.namespace)
    image_ids = {image["metadata"]["name"]: ids.image_id(image) for image in ctx.cluster.images()}
    zone = host_state.DEFAULT_AVAILABILITY_ZONE
    listed = [
        _Listed(
            instance_filters.order_key(obj),
            ids.reservation_id(obj),
            views.instance(obj, image_ids, zone),
        )
        for obj in objects
    ]
    live_ids = {entry.view["InstanceId"] for entry in listed}
    if not wanted or not set(wanted) <= live_ids:
        live_uids = {str(obj["metadata"]["uid"]) for obj in objects}
        listed += [
            _Listed(
                terminated.order_key(record),
                terminated.reservation_id(record),
                terminated.view(record, image_ids, zone),
            )
            for record in ctx.terminated.in_namespace(ctx.namespace)
            if record.uuid not in live_uids
        ]
    return sorted(listed, key=lambda entry: entry.key)


def _reservations(ctx: Context, chosen: list[_Listed]) -> list[dict[str, Any]]:
    """Instances grouped by reservation, in the order of their first instance."""
    grouped: dict[str, dict[str, Any]] = {}
    for entry in chosen:
        group = grouped.setdefault(
            entry.reservation,
            {
                "ReservationId": entry.reservation,
                "OwnerId": ctx.namespace,
                "Groups": [],
                "Instances": [],
            },
        )
        group["Instances"].append(entry.view)
    return list(grouped.values())
