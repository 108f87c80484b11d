"""DescribeInstanceAttribute: one attribute of an instance, read from its Instance object as
EC2 words it.

What an Instance has is answered from it: its type (``spec.flavor``), its user data
(``spec.userData``, base64 as EC2 sends it), its root device. What EC2 has and Kubenova does
not is answered with the value that is true of every Kubenova instance: no kernel or ramdisk
of its own (the image boots whole), no termination or stop protection, not EBS-optimized
(DescribeInstances says the same), and a guest's own shutdown never terminates it. The
attributes that would need what Kubenova does not model (security groups, network interface
checks, product codes, enclaves) are ``UnsupportedOperation`` naming them; a name outside
EC2's list, and ``enaSupport`` (which EC2 itself does not describe), are
``InvalidParameterValue`` in EC2's words.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from kubenova.ec2 import actions_instances, errors, ids
from kubenova.ec2.context import Context

#: The root disk's device name: every guest's root disk is its first virtio disk (``vda`` in
#: the node agent's domain layout, the config drive being ``vdb``).
ROOT_DEVICE_NAME = "/dev/vda"
#: What the guest's own shutdown does: never a termination. Under ``spec.runStrategy:
#: Manual`` the instance stays stopped; under ``Always`` (the default) Kubenova starts it
#: again, which EC2's two values have no word for, and ``stop`` is the nearer.
SHUTDOWN_BEHAVIOR = "stop"

Answer = Callable[[dict[str, Any]], dict[str, Any]]


def _instance_type(instance: dict[str, Any]) -> dict[str, Any]:
    return {"InstanceType": {"Value": str((instance.get("spec") or {}).get("flavor") or "")}}


def _user_data(instance: dict[str, Any]) -> dict[str, Any]:
    text = (instance.get("spec") or {}).get("userData")
    if not text:
        return {"UserData": {}}  # EC2's answer for an instance launched without any
    return {"UserData": {"Value": base64.b64encode(str(text).encode()).decode()}}


def _block_devices(instance: dict[str, Any]) -> dict[str, Any]:
    # The root disk is the instance's own (RootDeviceType instance-store), not an EBS
    # volume: its mapping names the device and has no Ebs member.
    return {"BlockDeviceMappings": [{"DeviceName": ROOT_DEVICE_NAME}]}


def _constant(answer: dict[str, Any]) -> Answer:
    return lambda instance: answer


#: Each attribute answered, by EC2's name, and how its answer is read from the Instance.
ANSWERS: dict[str, Answer] = {
    "instanceType": _instance_type,
    "userData": _user_data,
    "kernel": _constant({"KernelId": {}}),
    "ramdisk": _constant({"RamdiskId": {}}),
    "disableApiTermination": _constant({"DisableApiTermination": {"Value": False}}),
    "disableApiStop": _constant({"DisableApiStop": {"Value": False}}),
    "instanceInitiatedShutdownBehavior": _constant(
        {"InstanceInitiatedShutdownBehavior": {"Value": SHUTDOWN_BEHAVIOR}}
    ),
    "rootDeviceName": _constant({"RootDeviceName": {"Value": ROOT_DEVICE_NAME}}),
    "blockDeviceMapping": _block_devices,
    "ebsOptimized": _constant({"EbsOptimized": {"Value": False}}),
}
#: EC2's attributes that Kubenova has nothing to answer with, and why.
UNSUPPORTED = {
    "productCodes": "Kubenova images carry no Marketplace product codes",
    "sourceDestCheck": "Kubenova instances have no network interfaces of EC2's to check",
    "groupSet": "Kubenova has no security groups",
    "sriovNetSupport": "Kubenova guests have a virtio network interface, never SR-IOV",
    "enclaveOptions": "Kubenova has no Nitro Enclaves",
}


def describe_instance_attribute(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    attribute = str(params["Attribute"])
    answer = _answer(attribute)
    [instance] = actions_instances.find(ctx, [str(params["InstanceId"])])
    return {"InstanceId": ids.instance_id(instance), **answer(instance)}


def _answer(attribute: str) -> Answer:
    """How ``attribute`` is answered; refused, before the instance is looked up, when it is
    not."""
    answer = ANSWERS.get(attribute)
    if answer is not None:
        return answer
    if attribute in UNSUPPORTED:
        raise errors.Ec2Error(
            errors.UNSUPPORTED_OPERATION,
            f"The instance attribute '{attribute}' is not described by Kubenova:"
            f" {UNSUPPORTED[attribute]}.",
        )
    raise errors.Ec2Error(
        errors.INVALID_PARAMETER_VALUE,
        f"Value ({attribute}) for parameter attribute is invalid. Unknown attribute.",
    )
