"""CreateImage: an image of an instance's root disk, asked for as ``kubectl nova snapshot NAME
IMAGE`` asks for it, with an InstanceSnapshot named after the image and owned by the Instance.
The operator takes the snapshot and makes the Image (docs/snapshots.md); until then the image is
``pending`` in DescribeImages, then ``available`` under the same id, or ``failed`` with the
reason (:mod:`amis`).

What EC2 refuses at once is refused here before anything is made: a name EC2 or Kubernetes
would not take, a name an image has (or is about to have), an instance in a state the snapshot
is not taken from.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import actions_instances, errors, ids, states, tag_store, tags, views
from kubenova.ec2.context import Context
from kubenova.k8s import resources

LOG = logging.getLogger(__name__)

#: EC2's rule for an AMI name: 3 to 128 letters, digits and ( ) [ ] space . / - ' @ _
_EC2_NAME = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")
#: The Image (and its InstanceSnapshot) is named after the AMI: a Kubernetes object name,
#: as the InstanceSnapshot's spec.imageName takes it.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
#: EC2's limit on an AMI's description (the InstanceSnapshot's spec.description has the same).
MAX_DESCRIPTION = 255
#: The phases a snapshot is taken in: Nova's vm_states active, stopped, paused and suspended
#: (compute.operations.SNAPSHOT), as the Instance shows them.
_SNAPSHOT_PHASES = ("Running", "Stopped", "Paused", "Suspended")


def create_image(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = str(params["Name"])
    require_name(name)
    description = params.get("Description")
    if description is not None and len(str(description)) > MAX_DESCRIPTION:
        raise errors.invalid("Description", f"at most {MAX_DESCRIPTION} characters")
    _refuse_what_is_not_made(params)
    image_tags = tags.from_specifications(params.get("TagSpecifications"), tag_store.IMAGE)
    [instance] = actions_instances.find(ctx, [str(params["InstanceId"])])
    # The name first: it is refused whatever the instance is doing, while the instance's
    # state changes under the caller (a second CreateImage meets the first one's snapshot).
    _require_unused(ctx, name)
    _require_snapshot_state(instance)
    # NoReboot is taken either way: the guest is never rebooted. A running one is paused for
    # the moment of the copy, which makes the copy crash-consistent (docs/snapshots.md).
    created = _create(ctx, snapshot_body(instance, name, description), name)
    image_id = ids.snapshot_image_id(created)
    LOG.info(
        "CreateImage asks for image %s (%s) of %s/%s",
        name,
        image_id,
        ctx.namespace,
        instance["metadata"]["name"],
    )
    if image_tags:
        pending = tag_store.Resource(image_id, tag_store.IMAGE, image_id, {})
        tag_store.change(ctx, pending, lambda current: {**current, **image_tags})
    return {"ImageId": image_id}


def require_name(name: str) -> None:
    if not _EC2_NAME.match(name):
        raise errors.Ec2Error(
            errors.INVALID_AMI_NAME_MALFORMED,
            f"AMI name '{name}' is invalid: it must be 3 to 128 letters, numbers and"
            " ( ) [ ] space . / - ' @ _",
        )
    if not _OBJECT_NAME.match(name):
        raise errors.Ec2Error(
            errors.INVALID_AMI_NAME_MALFORMED,
            f"AMI name '{name}' is invalid in Kubenova: the Image is named after it, so it must"
            " be lower-case letters, digits, '-' and '.', starting and ending with a letter or"
            " digit",
        )


def _refuse_what_is_not_made(params: dict[str, Any]) -> None:
    """Parameters for what a Kubenova snapshot does not make: refused by name, not dropped."""
    if params.get("BlockDeviceMappings"):
        raise errors.invalid(
            "BlockDeviceMapping", "Kubenova images the root disk only; there are no volumes"
        )
    if params.get("BootModeOverride") is not None:
        raise errors.invalid("BootModeOverride", "an image boots as its source image did")
    if params.get("SnapshotLocation") not in (None, "regional"):
        raise errors.invalid("SnapshotLocation", "images are kept on the image server only")


def _require_snapshot_state(instance: dict[str, Any]) -> None:
    """Refuse at once what the operator would refuse: a snapshot needs an instance that is
    running or stopped (paused and suspended guests too) with nothing under way."""
    state = states.of_instance(instance)
    status = instance.get("status") or {}
    phase = status.get("phase")
    task = status.get("taskState")
    if state in (states.RUNNING, states.STOPPED) and phase in _SNAPSHOT_PHASES and not task:
        return
    if task:
        why = f"{task} is under way"
    elif phase == "VerifyResize":
        why = "a resize awaits its confirmation"
    else:
        why = f"it is {state.name}"
    raise errors.Ec2Error(
        errors.INCORRECT_INSTANCE_STATE,
        f"The instance '{ids.instance_id(instance)}' is not in a state from which an image can"
        f" be made ({why}); it must be running or stopped.",
    )


def _require_unused(ctx: Context, name: str) -> None:
    """The name is no Image's, and no InstanceSnapshot is about to make an Image of it (in
    any namespace: Images are the cluster's). The namespace's own InstanceSnapshot of that
    name holds the name, whatever became of it."""
    image = next((obj for obj in ctx.cluster.images() if obj["metadata"]["name"] == name), None)
    if image is not None:
        raise _duplicate(name, f"AMI {ids.image_id(image)}")
    for snapshot in ctx.cluster.instance_snapshots_named(name):
        if snapshot["metadata"].get("namespace") == ctx.namespace:
            phase = (snapshot.get("status") or {}).get("phase") or "Pending"
            raise _duplicate(
                name,
                f"AMI {ids.snapshot_image_id(snapshot)}, the InstanceSnapshot '{name}' of this"
                f" namespace ({phase}; delete it to use the name again)",
            )
        if views.snapshot_state(snapshot) == views.IMAGE_PENDING:
            raise _duplicate(name, "an image another namespace is making")


def _duplicate(name: str, holder: str) -> errors.Ec2Error:
    return errors.Ec2Error(
        errors.INVALID_AMI_NAME_DUPLICATE, f"AMI name '{name}' is already in use by {holder}."
    )


def snapshot_body(instance: dict[str, Any], image: str, description: Any = None) -> dict[str, Any]:
    """The InstanceSnapshot ``kubectl nova snapshot`` makes: named after the image, owned by
    the Instance (it goes with the Instance; the Image stays)."""
    meta = instance["metadata"]
    spec: dict[str, Any] = {"instance": meta["name"], "imageName": image}
    if description:
        spec["description"] = str(description)
    return {
        "apiVersion": resources.API_VERSION,
        "kind": "InstanceSnapshot",
        "metadata": {
            "name": image,
            "ownerReferences": [
                {
                    "apiVersion": resources.API_VERSION,
                    "kind": "Instance",
                    "name": meta["name"],
                    "uid": meta["uid"],
                }
            ],
        },
        "spec": spec,
    }


def _create(ctx: Context, body: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        return ctx.cluster.create_instance_snapshot(ctx.namespace, body)
    except k8s_exceptions.ApiException as exc:
        if exc.status == 409:  # another request took the name since it was checked
            raise _duplicate(name, "an image asked for meanwhile") from None
        raise
