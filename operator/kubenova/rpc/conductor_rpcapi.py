"""Client side of the conductor API: an agent reports to the ``conductor`` queue.

The agent holds no database credentials; every change it wants recorded is one of
these casts, which the conductor validates (is the sender the instance's host?)
before it writes. The work happens in ``kubenova.conductor.manager``.
"""

from __future__ import annotations

from kubenova.rpc import migration_payloads, payloads
from kubenova.rpc.compute_rpcapi import Caster

CONDUCTOR_TOPIC = "conductor"


class ConductorAPI:
    """Reports from one host's agent."""

    def __init__(self, caster: Caster) -> None:
        self._caster = caster

    def _cast(self, method: str, payload: payloads.Payload, request_id: str) -> str:
        return self._caster.cast(
            CONDUCTOR_TOPIC, method, payload.model_dump(mode="json"), request_id
        )

    def compute_node_report(self, report: payloads.ComputeNodeReport, request_id: str) -> str:
        return self._cast("compute_node_report", report, request_id)

    def service_stopping(self, stopping: payloads.ServiceStopping, request_id: str) -> str:
        return self._cast("service_stopping", stopping, request_id)

    def instance_update(self, update: payloads.InstanceUpdate, request_id: str) -> str:
        return self._cast("instance_update", update, request_id)

    def instance_build_failed(self, failure: payloads.InstanceBuildFailed, request_id: str) -> str:
        return self._cast("instance_build_failed", failure, request_id)

    def instance_terminated(self, event: payloads.InstanceTerminated, request_id: str) -> str:
        return self._cast("instance_terminated", event, request_id)

    def instance_operation_finished(
        self, finished: payloads.InstanceOperationFinished, request_id: str
    ) -> str:
        return self._cast("instance_operation_finished", finished, request_id)

    def snapshot_finished(self, finished: payloads.SnapshotFinished, request_id: str) -> str:
        return self._cast("snapshot_finished", finished, request_id)

    def migration_step_finished(
        self, finished: migration_payloads.MigrationStepFinished, request_id: str
    ) -> str:
        return self._cast("migration_step_finished", finished, request_id)

    def migration_progress(
        self, progress: migration_payloads.MigrationProgress, request_id: str
    ) -> str:
        return self._cast("migration_progress", progress, request_id)
