"""ModifyInstanceAttribute: the instance type of a stopped instance, as ec2-api changed it (a
resize). Nothing else of an instance's is modified here.

A Kubenova resize ends in VerifyResize and waits for a confirmation (or a revert), which EC2
clients have no way to give: ec2-api waited for Nova's resize and confirmed it. Here the one
patch that sets ``spec.flavor`` also stamps ``spec.confirmResize``, as ``kubectl nova
resize-confirm`` does, so the operator confirms the resize as soon as it reaches VerifyResize
(it applies a spec's changes one after another: the new flavor, then the confirmation), and
the answer need not wait for either.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import actions_instances, errors, ids, instance_filters, states
from kubenova.ec2.context import Context

LOG = logging.getLogger(__name__)

INSTANCE_TYPE = "instanceType"
#: Each structured parameter of ModifyInstanceAttribute, and the attribute it modifies (the
#: name the Attribute parameter gives it).
_ATTRIBUTES = {
    "InstanceType": INSTANCE_TYPE,
    "UserData": "userData",
    "Kernel": "kernel",
    "Ramdisk": "ramdisk",
    "DisableApiTermination": "disableApiTermination",
    "DisableApiStop": "disableApiStop",
    "InstanceInitiatedShutdownBehavior": "instanceInitiatedShutdownBehavior",
    "BlockDeviceMappings": "blockDeviceMapping",
    "SourceDestCheck": "sourceDestCheck",
    "Groups": "groupSet",
    "EbsOptimized": "ebsOptimized",
    "SriovNetSupport": "sriovNetSupport",
    "EnaSupport": "enaSupport",
    "EnclaveOptions": "enclaveOptions",
}
#: How often the patch is made again after the Instance changed between its read and write.
ATTEMPTS = 5


def modify_instance_attribute(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    flavor_name, field = _instance_type(params)
    [instance] = actions_instances.find(ctx, [str(params["InstanceId"])])
    flavor = ctx.cluster.flavor(flavor_name)
    if flavor is None:
        raise errors.invalid(field, f"the instance type '{flavor_name}' does not exist")
    instance_id = ids.instance_id(instance)
    for _ in range(ATTEMPTS):
        _require_stopped(instance)
        spec = instance.get("spec") or {}
        if spec.get("flavor") == flavor_name:
            return {}  # it has that type already: nothing to resize, as ec2-api answered
        _require_no_smaller_disk(ctx, str(spec.get("flavor") or ""), flavor, field)
        previous = (spec.get("confirmResize") or {}).get("requestedAt")
        patch = {
            # Conditional on the state just checked: a start that got in between is seen.
            "metadata": {"resourceVersion": instance["metadata"]["resourceVersion"]},
            "spec": {"flavor": flavor_name, "confirmResize": {"requestedAt": stamp(previous)}},
        }
        name = instance["metadata"]["name"]
        try:
            patched = ctx.cluster.patch_instance(ctx.namespace, name, patch)
        except k8s_exceptions.ApiException as exc:
            if exc.status != 409:
                raise
            patched = ctx.cluster.instance(ctx.namespace, name)
            if patched is None or ids.instance_id(patched) != instance_id:
                raise instance_filters.not_found([instance_id]) from None
            instance = patched
            continue
        if patched is None:
            raise instance_filters.not_found([instance_id])
        LOG.info("ModifyInstanceAttribute resizes %s/%s to %s", ctx.namespace, name, flavor_name)
        return {}
    raise errors.Ec2Error(
        errors.INTERNAL_ERROR,
        f"The instance {instance_id} changed {ATTEMPTS} times while being modified; try again.",
    )


def _instance_type(params: dict[str, Any]) -> tuple[str, str]:
    """The instance type asked for and the parameter that gave it (for messages); any other
    attribute is refused by name."""
    given = [
        (attr, member) for member, attr in _ATTRIBUTES.items() if params.get(member) is not None
    ]
    attribute = params.get("Attribute")
    if attribute is not None:
        given.append((str(attribute), "Attribute"))
    elif params.get("Value") is not None:
        raise errors.missing("Attribute")
    if not given:
        raise errors.missing("Attribute")
    for name, _ in given:
        if name != INSTANCE_TYPE:
            raise errors.Ec2Error(
                errors.UNSUPPORTED_OPERATION,
                f"The instance attribute '{name}' cannot be modified in Kubenova; only"
                f" '{INSTANCE_TYPE}' can.",
            )
    if len(given) > 1:
        raise errors.Ec2Error(
            errors.INVALID_PARAMETER_COMBINATION,
            "Give the instance type once: InstanceType.Value, or Attribute with Value.",
        )
    if given[0][1] == "Attribute":
        value, field = params.get("Value"), "Value"
    else:
        value, field = params["InstanceType"].get("Value"), "InstanceType.Value"
    if not value:
        raise errors.missing(field)
    return str(value), field


def _require_stopped(instance: dict[str, Any]) -> None:
    """EC2 changes the type of a stopped instance only; Kubenova's resize of a stopped one
    needs a shut-off guest (not a paused or suspended one) with nothing under way."""
    state = states.of_instance(instance)
    status = instance.get("status") or {}
    phase, task = status.get("phase"), status.get("taskState")
    if state is states.STOPPED and phase == "Stopped" and not task:
        return
    if task:
        why = f"{task} is under way"
    elif phase == "VerifyResize":
        why = "its resize is not confirmed yet"
    elif state is states.STOPPED:
        why = f"it is {str(phase).lower()}, not shut off"
    else:
        why = f"it is {state.name}"
    raise errors.Ec2Error(
        errors.INCORRECT_INSTANCE_STATE,
        f"The instance '{ids.instance_id(instance)}' is not in the 'stopped' state ({why}).",
    )


def _require_no_smaller_disk(
    ctx: Context, current_name: str, wanted: dict[str, Any], field: str
) -> None:
    """Refuse at once what the operator would refuse: a disk never shrinks."""
    current = ctx.cluster.flavor(current_name) if current_name else None
    if current is None:
        return  # the operator decides from the flavor the instance was built with
    have = int((current.get("spec") or {}).get("diskGiB") or 0)
    new = int((wanted.get("spec") or {}).get("diskGiB") or 0)
    if new < have:
        raise errors.invalid(
            field,
            f"the instance type '{wanted['metadata']['name']}' has {new} GiB of disk, less than"
            f" the {have} GiB of '{current_name}', and a disk never shrinks",
        )


def stamp(previous: Any = None) -> str:
    """A new ``spec.confirmResize.requestedAt``: the time, never equal to ``previous`` (an
    equal stamp would not be a new confirmation)."""
    now = datetime.datetime.now(datetime.UTC)
    text = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    while text == previous:
        now += datetime.timedelta(microseconds=1)
        text = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return text
