"""Operations whose host never answered (Nova's ``_init_instance``, from the conductor's
side): cast once more, then rolled back, so that no instance stays in a task state. A
resize's step is cast again each time it has waited that long (its steps are idempotent, and
half a resize cannot be rolled back from here: the guest may be on either host)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Protocol

from kubenova.compute import operations, states
from kubenova.conductor.action_history import ActionView
from kubenova.conductor.instance_operations import FAILED, Cast, InstanceOperations, short
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import envelope

LOG = logging.getLogger(__name__)

#: The task states whose operations are swept.
_WATCHED = (
    frozenset(operations.BY_TASK_STATE)
    | operations.RESIZE_TASK_STATES
    | {states.MIGRATING, states.REBUILD_SPAWNING}
)


class Recaster(Protocol):
    """Casts the step under way of a move again (``LiveMigrations.recast``)."""

    def __call__(self, record: models.Instance, request_id: str) -> None: ...


class StaleOperations:
    """The periodic sweep of operations under way for too long."""

    def __init__(
        self,
        instance_operations: InstanceOperations,
        moves: Mapping[str, Recaster] | None = None,
    ) -> None:
        self._operations = instance_operations
        # Moves of many steps, by their task state (a live migration, an evacuation): each
        # step is cast again when it waited too long, never rolled back from here: the guest
        # may be on either host, and only the hosts know.
        self._moves = dict(moves or {})
        self.settings = instance_operations.settings
        self.session_factory = instance_operations.session_factory
        # Operations cast once more (uuid -> request id).
        self._recast: dict[str, str] = {}
        self._swept_once = False

    def forget(self, instance_uuid: str) -> None:
        """The operation of the instance ended."""
        self._recast.pop(instance_uuid, None)

    def finish_stale(self, now: datetime.datetime | None = None) -> None:
        """Finish or roll back operations whose host has not answered (Nova's
        ``_init_instance``, from the conductor's side): after ``operation_timeout_s`` past
        the shutdown timeout the operation is cast once more (the host's handlers are
        idempotent: the first cast may have been lost with an operator that died before
        sending it); after twice that it is rolled back: no task, the action ended with
        Error and a message that says so, the Synced condition saying why."""
        if not self._swept_once:
            # This process may be the one that died between swapping a task state in and
            # casting it: cast every operation under way once more (as Nova's compute does
            # at start-up). Handlers on the hosts are idempotent.
            self._swept_once = True
            self.recast_all()
            return
        now = now or models.utcnow()
        limit = datetime.timedelta(
            seconds=self.settings.operation_timeout_s + self.settings.shutdown_timeout_s
        )
        with db_engine.transaction(self.session_factory) as session:
            busy = db_api.instances_in_task_states(session, _WATCHED)
            stale = []
            for record in busy:
                action = db_api.action_latest_unfinished(session, record.uuid)
                started = action.start_time if action is not None else record.updated_at
                if started is not None and now - started > limit:
                    request_id = action.request_id if action else envelope.new_request_id()
                    stale.append((record, request_id, now - started > 2 * limit))
        for record, request_id, give_up in stale:
            if record.task_state in self._moves:
                self._moves[record.task_state](record, request_id)
                continue
            if record.task_state in operations.RESIZE_TASK_STATES:
                if self._recast.get(record.uuid) != f"{request_id}/{record.task_state}":
                    self._recast[record.uuid] = f"{request_id}/{record.task_state}"
                    self._operations.resizes.recast(record, request_id)
                continue
            operation = operations.BY_TASK_STATE[record.task_state or ""]
            if give_up:
                self._roll_back(record, operation, request_id, limit * 2)
            elif self._recast.get(record.uuid) != request_id and record.host is not None:
                LOG.warning(
                    "instance %s: no answer to %s from %s; casting it again",
                    record.uuid,
                    operation.name,
                    record.host,
                )
                self._recast[record.uuid] = request_id
                self._operations.cast(
                    record,
                    Cast(operation, record.host, request_id, record.vm_state != states.STOPPED),
                )

    def recast_all(self) -> None:
        """Cast every operation under way once more (at start-up: this process may be the
        one that died between swapping a task state in and casting it)."""
        with db_engine.transaction(self.session_factory) as session:
            busy = [
                (record, db_api.action_latest_unfinished(session, record.uuid))
                for record in db_api.instances_in_task_states(session, _WATCHED)
            ]
        for record, action in busy:
            if record.host is None or action is None:
                continue
            if record.task_state in self._moves:
                self._moves[record.task_state](record, action.request_id)
                continue
            if record.task_state in operations.RESIZE_TASK_STATES:
                self._operations.resizes.recast(record, action.request_id)
                continue
            operation = operations.BY_TASK_STATE[record.task_state or ""]
            LOG.info(
                "instance %s: %s under way at start-up; cast again", record.uuid, operation.name
            )
            self._operations.cast(
                record,
                Cast(operation, record.host, action.request_id, record.vm_state != states.STOPPED),
            )

    def _roll_back(
        self,
        record: models.Instance,
        operation: operations.Operation,
        request_id: str,
        waited: datetime.timedelta,
    ) -> None:
        message = (
            f"{operation.name} rolled back: host {record.host} did not answer within "
            f"{int(waited.total_seconds())} s"
        )
        with db_engine.transaction(self.session_factory) as session:
            current = db_api.instance_lock(session, record.uuid)
            if current is None or current.task_state != operation.task_state:
                return
            db_api.instance_set(
                session,
                current,
                task_state=None,
                task_generation=None,
                generation=max(current.generation, current.task_generation or 0),
                sync_reason=FAILED,
                sync_message=message,
            )
            if db_api.action_get(session, current.uuid, request_id) is None:
                return
            now = models.utcnow()
            action, _ = db_api.action_event_record(
                session,
                current.uuid,
                request_id,
                "conductor_roll_back",
                db_api.EVENT_RESULT_ERROR,
                host=None,
                start_time=now,
                finish_time=now,
                details=message,
            )
            db_api.action_finish(session, current.uuid, request_id, message=short(message))
            view = ActionView.from_rows(current, action, db_api.action_events(session, action.id))
        LOG.warning("instance %s: %s", current.uuid, message)
        self._recast.pop(current.uuid, None)
        self._operations.post_event(current, FAILED, message)
        self._operations.history.record(view)
        self._operations.projector.project(current.uuid, record=current)

    # -- helpers ------------------------------------------------------------------------
