"""The AMIs an access key's namespace sees: the cluster's Images, which every namespace boots
from (``available``), and the images its own InstanceSnapshots are still making (``pending``)
or failed to make (``failed``), as EC2 shows an image from CreateImage on.

An InstanceSnapshot's AMI id is derived from its uid, and the Image it makes names that uid
(:func:`ids.image_id`), so an image keeps its id from ``pending`` to ``available``. While both
are there the Image is what shows. Another namespace's snapshots are its own: it sees their
images once they are Images.
"""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import ids, views
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
