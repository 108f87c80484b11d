"""What every step of a resize records: the migration's reference for the hosts, the next
step's task state and status, and the end of the operation (no task, the action finished,
the Synced condition, the status projected). The base of
:class:`~kubenova.conductor.resize.Resizes`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.instance_events import post_instance_event
from kubenova.conductor.projector import InstanceProjector
from kubenova.conductor.resize_steps import Step
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi
from kubenova.rpc import migration_payloads as mp
from kubenova.scheduler.manager import SchedulerManager

LOG = logging.getLogger(__name__)

FAILED = "OperationFailed"
_MESSAGE_MAX = 1024


class ResizeRecords:
    """The records of resizes: see the module docstring."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        scheduler: SchedulerManager,
        compute: compute_rpcapi.ComputeAPI,
        projector: InstanceProjector,
        history: ActionHistory,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.kube = kube
        self.scheduler = scheduler
        self.compute = compute
        self.projector = projector
        self.history = history
        #: Told the uuid of a migration whose status changed (InstanceMigrations' status).
        self.on_migration_changed: Callable[[str], None] = lambda _uuid: None

    # -- records --------------------------------------------------------------------------

    def _ref(self, session: Any, migration: models.Migration) -> mp.MigrationRef:
        dest = migration.dest_compute or migration.source_compute
        uri = None
        if dest != migration.source_compute:
            node = db_api.compute_node_get(session, dest)
            uri = node.migration_uri if node is not None else None
        return mp.MigrationRef(
            uuid=migration.uuid, source_host=migration.source_compute, dest_host=dest, dest_uri=uri
        )

    def _advance(self, instance_uuid: str, status: str) -> mp.MigrationRef | None:
        """Mark the resize that awaits an answer ``status``; its reference, or None."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_in_progress(session, instance_uuid)
            if migration is None or migration.status != moves.FINISHED:
                return None
            moves.migration_set_status(session, migration, status)
            return self._ref(session, migration)

    def _set(self, step: Step, task_state: str, status: str, message: str | None = None) -> None:
        """The next step's task state and migration status."""
        with db_engine.transaction(self.session_factory) as session:
            db_api.instance_update_unread(session, step.record.uuid, task_state=task_state)
            migration = moves.migration_get(session, step.migration_uuid)
            if migration is not None:
                moves.migration_set_status(session, migration, status, message)

    def _end(
        self,
        step: Step,
        message: str | None,
        *,
        failed: bool | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """End the operation: no task, the action finished, the spec observed when it failed
        (it is not tried again until it changes), the status projected. It failed when
        ``message`` is given, unless ``failed`` says otherwise."""
        self._end_operation(
            step.record.uuid,
            step.request_id,
            message,
            failed=message is not None if failed is None else failed,
            values=values,
        )

    def _end_operation(
        self,
        instance_uuid: str,
        request_id: str,
        message: str | None,
        *,
        failed: bool,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, instance_uuid)
            if record is None:
                return
            update: dict[str, Any] = {"task_state": None, "task_generation": None}
            if record.task_generation is not None:
                # What the spec asked for: the Synced condition says how it went, and a
                # failure is not tried again until the spec changes.
                update["sync_reason"] = FAILED if failed else None
                update["sync_message"] = message[:_MESSAGE_MAX] if failed and message else None
                if failed:
                    update["generation"] = max(record.generation, record.task_generation)
            update.update(values or {})
            db_api.instance_set(session, record, **update)
            view = None
            if db_api.action_get(session, instance_uuid, request_id) is not None:
                action = db_api.action_finish(
                    session, instance_uuid, request_id, message=message[:255] if message else None
                )
                events = db_api.action_events(session, action.id)
                view = ActionView.from_rows(
                    record, action, events, result="Error" if failed else None
                )
        if failed and message:
            LOG.warning("instance %s: %s", instance_uuid, message)
            post_instance_event(self.kube, record, FAILED, message)
        if view is not None:
            self.history.record(view)
        self.projector.project(instance_uuid, record=record)
