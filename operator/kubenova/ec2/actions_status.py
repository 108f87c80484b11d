"""DescribeInstanceStatus: each instance's state and EC2's two status checks, so that boto3's
``instance_status_ok`` waiter works.

Kubenova has no in-guest reachability probe, so the checks say what the control plane knows: a
running instance is ``ok``, one still being built is ``initializing``, a failed one (phase Error)
is ``impaired``, and any other is ``not-applicable``, as EC2 says of a stopped instance (and
of a terminated one, which shows for a while after its Instance is gone: :mod:`terminated`).
By default only running instances are listed (EC2's ``IncludeAllInstances=false``), so an id
that is terminated is then left out rather than refused.
"""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import actions_instances, filters, instance_filters, states, terminated, views
from kubenova.ec2.context import Context
from kubenova.scheduler import host_state

#: The instance filters DescribeInstanceStatus takes (besides the tag filters), read from the
#: instance as DescribeInstances describes it.
_FIELDS = {
    name: instance_filters.FIELDS[name]
    for name in ("availability-zone", "instance-state-name", "instance-state-code")
}


def describe_instance_status(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    wanted = [str(value) for value in params.get("InstanceIds") or []]
    parsed = filters.parse(params.get("Filters"), _FIELDS, tag_filters=True)
    include_all = bool(params.get("IncludeAllInstances"))
    statuses = []
    for found in _instances(ctx, wanted, include_all):
        if isinstance(found, terminated.Record):
            state = states.TERMINATED
            view = terminated.view(found, {}, host_state.DEFAULT_AVAILABILITY_ZONE)
            check: dict[str, Any] = {"Status": "not-applicable"}
        else:
            state = states.of_instance(found)
            view = views.instance(found, {}, host_state.DEFAULT_AVAILABILITY_ZONE)
            check = _check(found, state)
        if state is not states.RUNNING and not include_all:
            continue
        if not filters.passes(view, parsed):
            continue
        statuses.append(
            {
                "InstanceId": view["InstanceId"],
                "AvailabilityZone": view["Placement"]["AvailabilityZone"],
                "InstanceState": state.as_output(),
                "InstanceStatus": check,
                "SystemStatus": check,
                "Events": [],
            }
        )
    return {"InstanceStatuses": statuses}


def _instances(
    ctx: Context, wanted: list[str], include_all: bool
) -> list[dict[str, Any] | terminated.Record]:
    """The instances ``wanted`` (live or terminated lately), else all the namespace's: the
    terminated ones only when all are asked for, since only running ones are shown otherwise."""
    if wanted:
        return actions_instances.lookup(ctx, wanted)
    objects = sorted(ctx.cluster.instances(ctx.namespace), key=instance_filters.order_key)
    found: list[dict[str, Any] | terminated.Record] = list(objects)
    if include_all:
        live_uids = {str(obj["metadata"]["uid"]) for obj in objects}
        records = sorted(
            (r for r in ctx.terminated.in_namespace(ctx.namespace) if r.uuid not in live_uids),
            key=terminated.order_key,
        )
        found.extend(records)
    return found


def _check(obj: dict[str, Any], state: states.State) -> dict[str, Any]:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Error":
        status, detail = "impaired", "failed"
    elif state is states.RUNNING:
        status, detail = "ok", "passed"
    elif state is states.PENDING:
        status, detail = "initializing", "initializing"
    else:
        return {"Status": "not-applicable"}
    return {"Status": status, "Details": [{"Name": "reachability", "Status": detail}]}
