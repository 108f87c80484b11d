"""What a changed spec asks of an instance's record: the next operation, in order (a new
image first, then the power state, then a new reboot request), or a refusal that needs no
state to decide. Pure: the conductor's :mod:`instance_operations` acts on the answer."""

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
    #: The snapshot of the Image spec.image names (as a create records it), or None when
    #: it could not be resolved; then ``unresolved`` says why, naming the field.
    image: dict[str, Any] | None = None
    unresolved: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Wanted:
    """What a spec asks of a record next: an operation (with the record's new values, and
    the reboot stamp it acts on), a refusal that needs no state to decide, or nothing."""

    operation: operations.Operation | None = None
    record_values: dict[str, Any] = dataclasses.field(default_factory=dict)
    stamp: str | None = None
    refusal: tuple[str, str] | None = None


def wanted(change: SpecChange, record: models.Instance) -> Wanted:
    """The next operation ``change.spec`` asks of ``record``: a new image first, then the
    power state, then a new reboot request."""
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
    operation = operations.for_power_state(str(spec.get("powerState", "Running")), record.vm_state)
    if operation is not None:
        return Wanted(operation)
    reboot = spec.get("reboot") or {}
    stamp = reboot.get("requestedAt")
    if stamp and stamp != record.last_reboot_request:
        return Wanted(operations.reboot(reboot.get("type") == "Hard"), stamp=str(stamp))
    return Wanted()
