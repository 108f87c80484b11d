"""The conductor's queue: every agent report arrives here and is dispatched once its sender
is known to be the host it speaks of.

Agents hold no database credentials. Each report arrives as a message whose ``user_id``
RabbitMQ has verified, so the conductor refuses a report about another host before anything
is written; the handlers then refuse a report about an instance assigned to another host.
"""

from __future__ import annotations

from typing import TypeVar

from kubenova.conductor import live_migration_steps
from kubenova.conductor.hypervisors import Hypervisors
from kubenova.conductor.instance_operations import InstanceOperations
from kubenova.conductor.instance_reports import InstanceReports
from kubenova.conductor.live_migration import LiveMigrations
from kubenova.conductor.resize import Resizes
from kubenova.conductor.snapshots import Snapshots
from kubenova.config import MessagingSettings
from kubenova.exception import PermanentFailure
from kubenova.rpc import envelope, migration_payloads, payloads

# Every agent report names the host it is about; the conductor checks the sender against it.
_Report = TypeVar(
    "_Report",
    payloads.ComputeNodeReport,
    payloads.InstanceUpdate,
    payloads.InstanceBuildFailed,
    payloads.InstanceTerminated,
    payloads.ServiceStopping,
    payloads.InstanceOperationFinished,
    payloads.SnapshotFinished,
    migration_payloads.MigrationStepFinished,
    migration_payloads.MigrationProgress,
)


class ConductorManager:
    """Handles the ``conductor`` queue."""

    def __init__(
        self,
        hypervisors: Hypervisors,
        instances: InstanceReports,
        operations: InstanceOperations,
        snapshots: Snapshots | None = None,
        resizes: Resizes | None = None,
        live: LiveMigrations | None = None,
    ) -> None:
        self.hypervisors = hypervisors
        self.instances = instances
        self.operations = operations
        self.snapshots = snapshots
        self.resizes = resizes
        self.live = live

    def handle(self, message: envelope.Envelope, user_id: str | None) -> None:
        """Dispatch one agent report after checking who sent it."""
        method = message.method
        if method == "compute_node_report":
            self.hypervisors.compute_node_report(
                _checked(payloads.ComputeNodeReport, message, user_id), message.version
            )
        elif method == "instance_update":
            self.instances.instance_update(_checked(payloads.InstanceUpdate, message, user_id))
        elif method == "instance_build_failed":
            self.instances.instance_build_failed(
                _checked(payloads.InstanceBuildFailed, message, user_id)
            )
        elif method == "service_stopping":
            self.hypervisors.service_stopping(_checked(payloads.ServiceStopping, message, user_id))
        elif method == "instance_terminated":
            self.instances.instance_terminated(
                _checked(payloads.InstanceTerminated, message, user_id), message.request_id
            )
        elif method == "instance_operation_finished":
            self.operations.operation_finished(
                _checked(payloads.InstanceOperationFinished, message, user_id),
                message.request_id,
            )
        elif method == "snapshot_finished" and self.snapshots is not None:
            self.snapshots.snapshot_finished(
                _checked(payloads.SnapshotFinished, message, user_id), message.request_id
            )
        elif method == "migration_step_finished" and self.resizes is not None:
            step = _checked(migration_payloads.MigrationStepFinished, message, user_id)
            if step.step in live_migration_steps.STEPS and self.live is not None:
                self.live.step_finished(step, message.request_id)
            else:
                self.resizes.step_finished(step, message.request_id)
        elif method == "migration_progress" and self.live is not None:
            self.live.progress(_checked(migration_payloads.MigrationProgress, message, user_id))
        else:
            raise PermanentFailure(f"the conductor has no method {method!r}")


def _checked(
    payload_type: type[_Report], message: envelope.Envelope, user_id: str | None
) -> _Report:
    """The message's payload, once its sender is known to be the host it names."""
    payload = payload_type.model_validate(message.args)
    expected = MessagingSettings.agent_user(payload.host)
    if user_id != expected:
        raise PermanentFailure(
            f"{message.method} about host {payload.host!r} was sent by {user_id!r}, "
            f"not {expected!r}"
        )
    return payload
