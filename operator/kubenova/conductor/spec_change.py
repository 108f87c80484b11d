"""What a changed spec asks of an instance's record: the next operation, in order (a new
image first, then a new flavor or the answer to a resize, then the power state, then a new
reboot request), or a refusal that needs no state to decide. Pure: the conductor's
:mod:`instance_operations` acts on the answer."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any

from kubenova.compute import operations
from kubenova.db import models


@dataclasses.dataclass(frozen=True)
class SpecChange:
    """An Instance whose spec may ask for something its record does not show yet."""

    uid: str
    namespace: str
    name: str
    generation: int
    spec: Mapping[str, Any]
    request_id: str
    #: The snapshots of the Flavor and Image spec.flavor and spec.image name (as a create
    #: records them), or None when they could not be resolved; then ``unresolved`` says
    #: why, naming the field.
    flavor: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    unresolved: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Wanted:
    """What a spec asks of a record next: an operation (with the record's new values, and
    the reboot stamp it acts on), a refusal that needs no state to decide, or nothing."""

    operation: operations.Operation | None = None
    record_values: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The record's columns that keep a one-shot request acted on (even when refused).
    stamps: dict[str, str] = dataclasses.field(default_factory=dict)
    refusal: tuple[str, str] | None = None
    #: A resize: the flavor it resizes to.
    flavor: dict[str, Any] | None = None


def wanted(change: SpecChange, record: models.Instance, resized_from: str | None = None) -> Wanted:
    """The next operation ``change.spec`` asks of ``record``: a new image first, then a new
    flavor (or, for a resized instance, its confirmation or revert), then the power state,
    then a new reboot request. ``resized_from``: the flavor a resized instance had before."""
    spec = change.spec
    image_name = spec.get("image")
    if image_name and image_name != (record.image or {}).get("name"):
        if change.image is None:
            reason, message = change.unresolved or (
                "ImageNotFound",
                f"spec.image: Image {image_name!r} does not exist",
            )
            return Wanted(refusal=(reason, message))
        user_data = spec.get("userData")
        return Wanted(
            operations.REBUILD,
            record_values={
                "image": dict(change.image),
                "user_data": base64.b64encode(user_data.encode()).decode()
                if user_data is not None
                else None,
            },
        )
    resize = _resize(change, record, resized_from)
    if resize is not None:
        return resize
    operation = operations.for_power_state(str(spec.get("powerState", "Running")), record.vm_state)
    if operation is not None:
        return Wanted(operation)
    reboot = spec.get("reboot") or {}
    stamp = reboot.get("requestedAt")
    if stamp and stamp != record.last_reboot_request:
        return Wanted(
            operations.reboot(reboot.get("type") == "Hard"),
            stamps={"last_reboot_request": str(stamp)},
        )
    return Wanted()


def _resize(change: SpecChange, record: models.Instance, resized_from: str | None) -> Wanted | None:
    """A new flavor: a resize, or, while a resize awaits its answer, the old flavor again
    (its revert); then a new confirmation stamp. None when the spec asks neither."""
    flavor_name = change.spec.get("flavor")
    current = (record.flavor or {}).get("name")
    if flavor_name and flavor_name != current:
        if resized_from is not None and flavor_name == resized_from:
            return Wanted(operations.REVERT_RESIZE)
        if change.flavor is None:
            return Wanted(
                refusal=change.unresolved
                or ("FlavorNotFound", f"spec.flavor: Flavor {flavor_name!r} does not exist")
            )
        new_disk, old_disk = int(change.flavor["disk_gib"]), int((record.flavor or {})["disk_gib"])
        if new_disk < old_disk:
            return Wanted(
                refusal=(
                    "FlavorDiskTooSmall",
                    f"spec.flavor: cannot resize to {flavor_name}: its {new_disk} GiB of disk "
                    f"is less than the instance's {old_disk} GiB, and a disk never shrinks",
                )
            )
        return Wanted(operations.RESIZE, flavor=dict(change.flavor))
    confirm = (change.spec.get("confirmResize") or {}).get("requestedAt")
    if confirm and confirm != record.last_resize_confirm:
        return Wanted(operations.CONFIRM_RESIZE, stamps={"last_resize_confirm": str(confirm)})
    return None
