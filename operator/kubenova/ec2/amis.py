"""The AMIs an access key's namespace sees: the cluster's Images, which every namespace boots
from (``available``), and the images its own InstanceSnapshots are still making (``pending``)
or failed to make (``failed``), as EC2 shows an image from CreateImage on; and RunInstances'
refusal of one that is not an Image (yet).

An InstanceSnapshot's AMI id is derived from its uid, and the Image it makes names that uid
(:func:`ids.image_id`), so an image keeps its id from ``pending`` to ``available``. While both
are there the Image is what shows. Another namespace's snapshots are its own: it sees their
images once they are Images.
"""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import errors, ids, views
from kubenova.ec2.context import Context


def described(ctx: Context) -> dict[str, dict[str, Any]]:
    """The EC2 Image of every AMI the namespace sees, by AMI id."""
    found: dict[str, dict[str, Any]] = {}
    for snapshot in ctx.cluster.instance_snapshots(ctx.namespace):
        view = views.snapshot_image(snapshot)
        if view is not None:
            found[view["ImageId"]] = view
    for image in ctx.cluster.images():
        found[ids.image_id(image)] = views.image(image)
    return found


def unbootable(ctx: Context, image_id: str) -> errors.Ec2Error:
    """RunInstances' refusal of ``image_id``, which no Image has: while the namespace's
    InstanceSnapshot is still making it, EC2's answer for a pending AMI (Unavailable: it will
    boot once available); otherwise NotFound (no such image, or one that failed)."""
    for snapshot in ctx.cluster.instance_snapshots(ctx.namespace):
        if (
            ids.snapshot_image_id(snapshot) == image_id
            and views.snapshot_state(snapshot) == views.IMAGE_PENDING
        ):
            return errors.Ec2Error(
                errors.INVALID_AMI_ID_UNAVAILABLE,
                f"AMI '{image_id}' is pending, and cannot be run (parameter ImageId; wait for"
                " it to be available)",
            )
    return errors.Ec2Error(
        errors.INVALID_AMI_ID_NOT_FOUND, f"The image id '[{image_id}]' does not exist"
    )
