"""What every step of a resize records: the migration's reference for the hosts, the next
step's task state and status, and the end of the operation (no task, the action finished,
the Synced condition, the status projected). The base of
:class:`~kubenova.conductor.resize.Resizes`.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid as uuid_mod
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import orm

from kubenova.conductor import resize_placement
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
from kubenova.scheduler.manager import NoValidHost, SchedulerManager

LOG = logging.getLogger(__name__)

FAILED = "OperationFailed"
_MESSAGE_MAX = 1024


T = TypeVar("T")

#: Whether a step's report is the one its migration waits for.
Awaited = Callable[[models.Instance, models.Migration, mp.MigrationStepFinished], bool]


@dataclasses.dataclass(frozen=True)
class Ending:
    """An operation whose end is recorded: what is told once the records are committed."""

    record: models.Instance
    #: Why it failed, or None.
    failure: str | None
    view: ActionView | None


class MoveRefused(Exception):
    """No host took the move (or the instance went): the operation is ended."""


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
        # The (migration, step) pairs this process has cast again (see _first_recast).
        self._recast_steps: set[tuple[str, str]] = set()

    # -- the start and the steps of every move -------------------------------------------

    def _first_recast(self, migration_uuid: str, step: str) -> bool:
        """Whether ``step`` of the migration is to be cast again: once per process, as the
        stale sweep casts any operation once more. The host's durable queue keeps that cast
        until the host answers; one more at every sweep would only pile up behind it."""
        key = (migration_uuid, step)
        if key in self._recast_steps:
            return False
        self._recast_steps.add(key)
        return True

    def _claim(
        self,
        record: models.Instance,
        flavor: Mapping[str, Any],
        spec: Mapping[str, Any],
        request_id: str,
        *,
        migration_type: str,
        target_host: str | None,
        object_ref: tuple[str, str] | None,
        refusal: str,
    ) -> tuple[str, str]:
        """Schedule ``flavor`` for the move and claim the destination; the migration's uuid
        and the destination. When no host takes it, the operation is ended and
        :class:`MoveRefused` says why, after ``refusal`` ("cannot migrate")."""
        migration_uuid = str(uuid_mod.uuid4())
        placed = resize_placement.Resize(
            record,
            flavor,
            spec,
            request_id,
            migration_uuid,
            migration_type=migration_type,
            target_host=target_host,
            object_name=object_ref[0] if object_ref else None,
            object_uid=object_ref[1] if object_ref else None,
        )
        try:
            dest = resize_placement.claim_destination(
                self.settings, self.session_factory, self.kube, self.scheduler, placed
            )
        except (NoValidHost, moves.NotMovableError, ValueError) as exc:
            message = f"{refusal}: {exc}"
            self._end_operation(record.uuid, request_id, message, failed=True)
            raise MoveRefused(message) from exc
        return migration_uuid, dest

    def _step_of(
        self,
        report: mp.MigrationStepFinished,
        request_id: str,
        awaited: Awaited,
        details: Callable[[mp.MigrationStepFinished], str | None] = lambda r: r.message,
    ) -> Step | None:
        """The step ``report`` ends, with its action event recorded (its ``details``), or
        None when it is not the one ``awaited`` (a duplicate, a stray report: ignored)."""
        found = self._on_step(report, request_id, awaited, details, lambda _s, step, _m: step)
        return found[1] if found is not None else None

    @db_engine.retry_on_deadlock
    def _on_step(
        self,
        report: mp.MigrationStepFinished,
        request_id: str,
        awaited: Awaited,
        details: Callable[[mp.MigrationStepFinished], str | None],
        then: Callable[[orm.Session, Step, models.Migration], T],
    ) -> tuple[Step, T] | None:
        """:meth:`_step_of`, and ``then`` (the step's own changes) in the same transaction,
        with the instance's row and then the migration's locked; the step and what ``then``
        returned. ``then`` changes only the database: the transaction may run again."""
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, report.instance_uuid)
            migration = moves.migration_get(session, report.migration_uuid, for_update=True)
            if record is None or migration is None or not awaited(record, migration, report):
                LOG.info(
                    "instance %s: %s from %s is not the step under way (task %s); ignored",
                    report.instance_uuid,
                    report.step,
                    report.host,
                    record.task_state if record is not None else None,
                )
                return None
            db_api.action_event_record(
                session,
                record.uuid,
                request_id,
                f"compute_{report.step}",
                report.result,
                host=report.host,
                start_time=report.started_at,
                finish_time=report.finished_at,
                details=details(report),
            )
            step = Step(
                record=record,
                migration_uuid=migration.uuid,
                ref=self._ref(session, migration),
                report=report,
                request_id=request_id,
                failure=migration.message,
                old_flavor=dict(migration.old_flavor),
                new_flavor=dict(migration.new_flavor),
                power_on=bool(migration.power_on),
                source_node=migration.source_node,
                dest_node=migration.dest_node,
                migration_type=migration.migration_type,
                cancelled=bool(migration.cancel_requested),
            )
            return step, then(session, step, migration)

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
            ending = self._end_locked(
                session, record, request_id, message, failed=failed, values=values
            )
        self._ended(ending)

    def _end_locked(
        self,
        session: orm.Session,
        record: models.Instance,
        request_id: str,
        message: str | None,
        *,
        failed: bool,
        values: Mapping[str, Any] | None = None,
    ) -> Ending:
        """The records of :meth:`_end_operation`, in the caller's transaction, which has
        locked ``record``; hand what it returns to :meth:`_ended` once that commits."""
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
        if db_api.action_get(session, record.uuid, request_id) is not None:
            action = db_api.action_finish(
                session, record.uuid, request_id, message=message[:255] if message else None
            )
            events = db_api.action_events(session, action.id)
            view = ActionView.from_rows(record, action, events, result="Error" if failed else None)
        return Ending(record, message if failed else None, view)

    def _ended(self, ending: Ending) -> None:
        """What follows an operation's end once its records are committed: the failure's
        event, the action's object, the instance's status."""
        if ending.failure:
            LOG.warning("instance %s: %s", ending.record.uuid, ending.failure)
            post_instance_event(self.kube, ending.record, FAILED, ending.failure)
        if ending.view is not None:
            self.history.record(ending.view)
        self.projector.project(ending.record.uuid, record=ending.record)
