"""DescribeInstanceStatus: each instance's state and EC2's two status checks, so that boto3's
``instance_status_ok`` waiter works.

Kubenova has no in-guest reachability probe, so the checks say what the control plane knows: a
running instance is ``ok``, one still being built is ``initializing``, a failed one (phase Error)
is ``impaired``, and any other is ``not-applicable``, as EC2 says of a stopped instance. By
default only running instances are listed (EC2's ``IncludeAllInstances=false``).
"""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import actions_instances, ids, instance_filters, states, views
from kubenova.ec2.context import Context
from kubenova.scheduler import host_state

_FILTERS = ("availability-zone", "instance-state-name", "instance-state-code")


def describe_instance_status(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    wanted = [str(value) for value in params.get("InstanceIds") or []]
    if wanted:
        objects = actions_instances.find(ctx, wanted)
    else:
        objects = sorted(ctx.cluster.instances(ctx.namespace), key=instance_filters.order_key)
    filters = list(params.get("Filters") or [])
    for entry in filters:
        if entry.get("Name") not in _FILTERS:
            instance_filters.refuse_filter(str(entry.get("Name") or ""), _FILTERS)
    include_all = bool(params.get("IncludeAllInstances"))
    statuses = []
    for obj in objects:
        state = states.of_instance(obj)
        if state is not states.RUNNING and not include_all:
            continue
        view = views.instance(obj, {}, host_state.DEFAULT_AVAILABILITY_ZONE)
        if not instance_filters.matches(view, filters):
            continue
        check = _check(obj, state)
        statuses.append(
            {
                "InstanceId": ids.instance_id(obj),
                "AvailabilityZone": view["Placement"]["AvailabilityZone"],
                "InstanceState": state.as_output(),
                "InstanceStatus": check,
                "SystemStatus": check,
                "Events": [],
            }
        )
    return {"InstanceStatuses": statuses}


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
