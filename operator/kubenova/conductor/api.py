"""The conductor as the api layer sees it (Nova's ``conductor.api``): the one door through
which a request goes on once it is validated and resolved. Behind it the conductor owns the
whole road: record, schedule, claim, project, cast."""

from __future__ import annotations

from typing import Any

from kubenova.conductor.compute_tasks import BuildRequest, ComputeTaskManager
from kubenova.conductor.hypervisors import Hypervisors
from kubenova.conductor.instance_operations import InstanceOperations
from kubenova.conductor.projector import InstanceProjector
from kubenova.conductor.spec_change import SpecChange

__all__ = ["BuildRequest", "ConductorAPI", "SpecChange"]


class ConductorAPI:
    """Requests from the api layer's handlers, each handed to the part that owns it."""

    def __init__(
        self,
        tasks: ComputeTaskManager,
        projector: InstanceProjector,
        hypervisors: Hypervisors,
        operations: InstanceOperations,
    ) -> None:
        self._tasks = tasks
        self._projector = projector
        self._hypervisors = hypervisors
        self._operations = operations

    def build_instance(self, build: BuildRequest) -> None:
        """Record, schedule, claim and cast; raises ``NotReady`` while the instance must wait."""
        self._tasks.build_instance(build)

    def delete_instance(self, instance_uuid: str, request_id: str) -> bool:
        """Terminate and forget the instance; True once its record is gone."""
        return self._tasks.delete_instance(instance_uuid, request_id)

    def apply_spec(self, change: SpecChange) -> None:
        """Apply a changed spec (power state, reboot request): start the operation it asks
        for, refuse it, or record it applied; nothing while another task is under way."""
        self._operations.reconcile(change)

    def pending_status(
        self,
        instance_uuid: str,
        reason: str,
        message: str,
        *,
        previous_conditions: list[dict[str, Any]] | None,
        generation: int,
    ) -> dict[str, Any]:
        """The Pending status the caller writes for an instance that must wait."""
        return self._projector.pending(
            instance_uuid,
            reason,
            message,
            previous_conditions=previous_conditions,
            generation=generation,
        )

    def hypervisor_changed(self, host: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        """An administrator labelled, disabled or enabled a host, or set its allocation
        ratios."""
        self._hypervisors.hypervisor_changed(host, labels, spec)

    def hypervisor_deleted(self, host: str) -> bool:
        """A Hypervisor object was deleted; True when the host was forgotten."""
        return self._hypervisors.hypervisor_deleted(host)
