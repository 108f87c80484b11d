"""Snapshots whose host never answered (its agent died mid-way, or the cast was lost with an
operator that stopped before sending it): rolled back, so that no instance stays in the task
state ``image_snapshot`` (Nova's ``_init_instance`` for a snapshot clears the task). And
snapshots whose instance was deleted before they ended (a host that was down, so the delete
was done without it): ended at once, so that no InstanceSnapshot stays ``InProgress``."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kubenova.compute import operations
from kubenova.conductor import snapshot_requests
from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.instance_status import condition, timestamp
from kubenova.conductor.projector import InstanceProjector
from kubenova.conductor.snapshot_requests import (
    ACTION,
    FAILED,
    INSTANCE_DELETED,
    READY,
    SNAPSHOT_FAILED,
    SnapshotObjects,
)
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models

LOG = logging.getLogger(__name__)


class StaleSnapshots:
    """The periodic roll back of snapshots under way for longer than ``timeout_s``."""

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        objects: SnapshotObjects,
        projector: InstanceProjector,
        history: ActionHistory,
        *,
        timeout_s: float,
    ) -> None:
        self.session_factory = session_factory
        self.objects = objects
        self.projector = projector
        self.history = history
        self.timeout_s = timeout_s

    def finish_stale(self, now: datetime.datetime) -> None:
        """Roll back snapshots whose host has not answered within ``timeout_s``: no task,
        the action ended with ``Error``, the InstanceSnapshot ``Failed``. End those whose
        instance was deleted the same way, without waiting: whatever the host answers
        later, no Image is made. A copy the host made meanwhile is not lost: the image server
        keeps it, and no Image points at it."""
        limit = datetime.timedelta(seconds=self.timeout_s)
        stale: list[tuple[models.Instance, str]] = []
        with db_engine.transaction(self.session_factory) as session:
            for record in db_api.instances_in_task_states(
                session, [operations.SNAPSHOT.task_state]
            ):
                action = db_api.action_latest_unfinished(session, record.uuid)
                if action is None or action.action != ACTION:
                    continue
                if action.start_time is not None and now - action.start_time > limit:
                    stale.append((record, action.request_id))
            for action, record in db_api.actions_unfinished_of_deleted(session, ACTION):
                stale.append((record, action.request_id))
        for record, request_id in stale:
            message = (
                f"snapshot rolled back: host {record.host} did not answer within "
                f"{int(limit.total_seconds())} s"
            )
            self._roll_back(record, request_id, message, now)

    def _roll_back(
        self, record: models.Instance, request_id: str, message: str, now: datetime.datetime
    ) -> None:
        """End the snapshot of ``request_id``, with ``message`` unless its instance has been
        deleted meanwhile; nothing when it has ended already."""
        reason = SNAPSHOT_FAILED
        with db_engine.transaction(self.session_factory) as session:
            current = db_api.instance_lock(session, record.uuid, read_deleted=True)
            if current is None:
                return
            if current.deleted:
                action = db_api.action_get(session, current.uuid, request_id)
                if action is None or action.finish_time is not None:
                    return  # the host's answer ended it
                reason, message = INSTANCE_DELETED, snapshot_requests.deleted_message(current.name)
            elif current.task_state != operations.SNAPSHOT.task_state:
                return
            else:
                db_api.instance_set(session, current, task_state=None)
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
            db_api.action_finish(
                session, current.uuid, request_id, message=snapshot_requests.short(message)
            )
            view = ActionView.from_rows(current, action, db_api.action_events(session, action.id))
        LOG.warning("instance %s: %s", current.uuid, message)
        self.history.record(view)
        if not current.deleted:
            self.projector.project(current.uuid, record=current)
        snapshot_uid = request_id.removeprefix("req-")
        for snapshot in self._snapshots_of(current, snapshot_uid):
            meta = snapshot["metadata"]
            previous = dict(snapshot.get("status") or {})
            generation = int(meta.get("generation") or 1)
            snapshot_requests.write_status(
                self.objects,
                meta["namespace"],
                meta["name"],
                previous,
                {"phase": FAILED, "observedGeneration": generation, "finishTime": timestamp(now)},
                condition(READY, False, reason, message, previous.get("conditions"), generation),
            )
            self.objects.post_event(snapshot, reason=reason, message=message)

    def _snapshots_of(self, record: models.Instance, snapshot_uid: str) -> list[dict[str, Any]]:
        """The InstanceSnapshot whose uid is ``snapshot_uid`` (none when it was deleted)."""
        return [
            snapshot
            for snapshot in self.objects.list_snapshots(record.namespace)
            if snapshot["metadata"].get("uid") == snapshot_uid
        ]
