"""The steps of a resize as the conductor sees them: a step's report with what the next step
needs (:class:`Step`), whether a report is the one awaited, and what it says of the guest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kubenova.compute import states
from kubenova.db import api as db_api
from kubenova.db import models, moves
from kubenova.rpc import migration_payloads as mp
from kubenova.rpc import payloads

#: Step -> (the task state it runs under, whether the source runs it).
_STEPS: dict[str, tuple[str, bool]] = {
    "resize_instance": (states.RESIZE_MIGRATING, True),
    "finish_resize": (states.RESIZE_FINISH, False),
    "confirm_resize": (states.RESIZE_CONFIRMING, True),
    "revert_resize": (states.RESIZE_REVERTING, False),
    "finish_revert_resize": (states.RESIZE_REVERTING, True),
}


@dataclasses.dataclass(frozen=True)
class Step:
    """A step's report, with what the next step needs of its instance and migration."""

    record: models.Instance
    migration_uuid: str
    ref: mp.MigrationRef
    report: mp.MigrationStepFinished
    request_id: str
    #: Why the resize is being undone, when a step failed after the guest moved.
    failure: str | None
    old_flavor: dict[str, Any]
    new_flavor: dict[str, Any]
    power_on: bool
    source_node: str | None
    dest_node: str | None
    #: A resize, or a cold migration (which confirms itself).
    migration_type: str = moves.RESIZE
    #: The InstanceMigration was deleted before the guest moved: undo the move.
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.report.result == db_api.EVENT_RESULT_SUCCESS

    @property
    def why(self) -> str:
        return f"{self.report.step} failed on host {self.report.host}: {self.report.message}"


def expected(
    record: models.Instance, migration: models.Migration, report: mp.MigrationStepFinished
) -> bool:
    """Whether ``report`` is the step the instance's task state waits for, from its host."""
    if migration.instance_uuid != record.uuid or migration.status in moves.DONE:
        return False
    task_state, on_source = _STEPS[report.step]
    host = migration.source_compute if on_source else migration.dest_compute
    if record.task_state != task_state or report.host != host:
        return False
    if report.step == "revert_resize":
        return migration.status == moves.REVERTING
    return True


def with_flavor(
    payload: payloads.InstancePayload, flavor: Mapping[str, Any]
) -> payloads.InstancePayload:
    """``payload`` (an InstancePayload) with ``flavor``'s amounts."""
    return payload.model_copy(
        update={
            "vcpus": int(flavor["vcpus"]),
            "memory_mib": int(flavor["memory_mib"]),
            "disk_gib": int(flavor["disk_gib"]),
        }
    )


def power_values(report: mp.MigrationStepFinished) -> dict[str, Any]:
    """The vm_state and power the host reports: a guest left running is active, one left
    shut off stopped."""
    vm_state = states.ACTIVE if report.power_state == states.RUNNING else states.STOPPED
    if report.vm_state == states.ERROR:
        vm_state = states.ERROR
    return {
        "vm_state": vm_state,
        "power_state": report.power_state,
        "addresses": list(report.addresses),
    }
