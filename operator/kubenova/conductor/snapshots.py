"""Snapshots (Nova's ``createImage``): an InstanceSnapshot object becomes an Image that new
instances boot from.

The road: :meth:`Snapshots.create` checks the instance against the table of allowed states
(``operations.SNAPSHOT``: active, stopped, paused or suspended, no task under way) and its
host, swaps the task state ``image_snapshot`` in under the row lock, starts the instance action
``createImage``, says ``InProgress`` on the InstanceSnapshot and casts ``snapshot_instance`` to
the host. The host takes a consistent copy of the root disk, flattens it into a standalone
qcow2, uploads it to the image server and answers ``snapshot_finished``;
:meth:`Snapshots.snapshot_finished` ends the task and the action (event
``compute_snapshot_instance``), creates the Image (owned by nobody: it outlives the instance
and the InstanceSnapshot) and says ``Succeeded`` or ``Failed``.

A refused snapshot changes nothing but the InstanceSnapshot's status (``Failed``, condition
``Ready=False`` with reason ``InvalidState`` and a message naming the state) and an Event.

An instance deleted while its snapshot is taken makes no Image, as Nova's snapshot of a server
deleted meanwhile fails: the InstanceSnapshot ends ``Failed`` with reason ``InstanceDeleted``,
from the host's answer (the delete waits for the snapshot on the host), or, when none comes
(the host was down and the delete done without it), from the periodic sweep that finds the
action of a deleted instance unfinished. The delete itself does nothing more for it.

The action's request id is derived from the InstanceSnapshot's uid (``req-<uid>``), so a
second look at the same object (a repeated watch event, an operator restarted before it wrote
the status) finds the snapshot already under way instead of refusing it as busy. An answer
that never comes (the agent died) is rolled back by :meth:`Snapshots.finish_stale`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from kubenova.compute import operations, states
from kubenova.conductor import action_history, snapshot_requests
from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.instance_status import condition, timestamp
from kubenova.conductor.projector import InstanceProjector
from kubenova.conductor.snapshot_requests import (
    ACTION,
    FAILED,
    IMAGE_EXISTS,
    IN_PROGRESS,
    INSTANCE_DELETED,
    INSTANCE_NOT_FOUND,
    MESSAGE_MAX,
    READY,
    REFUSED,
    SNAPSHOT_FAILED,
    SUCCEEDED,
    SnapshotObjects,
    SnapshotRequest,
    SnapshotSettings,
    image_body,
    upload_url,
)
from kubenova.conductor.stale_snapshots import StaleSnapshots
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.exception import PermanentFailure
from kubenova.rpc import compute_rpcapi, payloads

LOG = logging.getLogger(__name__)


class Snapshots:
    """Starts snapshots from InstanceSnapshots and finishes them from the hosts' reports."""

    @classmethod
    def build(
        cls,
        settings: SnapshotSettings,
        session_factory: db_engine.SessionFactory,
        objects: SnapshotObjects,
        compute: compute_rpcapi.ComputeAPI,
        projector: InstanceProjector,
        history: ActionHistory,
        *,
        service_down_time_s: int,
    ) -> Snapshots:
        return cls(
            session_factory,
            objects,
            compute,
            projector,
            history,
            image_server_url=settings.image_server_url,
            service_down_time_s=service_down_time_s,
            timeout_s=settings.timeout_s,
        )

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        objects: SnapshotObjects,
        compute: compute_rpcapi.ComputeAPI,
        projector: InstanceProjector,
        history: ActionHistory,
        *,
        image_server_url: str,
        service_down_time_s: int,
        timeout_s: float,
        clock: Callable[[], datetime.datetime] = models.utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.objects = objects
        self.compute = compute
        self.projector = projector
        self.history = history
        self.image_server_url = image_server_url
        self.service_down_time_s = service_down_time_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._stale = StaleSnapshots(
            session_factory, objects, projector, history, timeout_s=timeout_s
        )

    # -- from the InstanceSnapshot ------------------------------------------------------

    def create(self, request: SnapshotRequest) -> None:
        """Start the snapshot ``request`` asks for, or refuse it; nothing when its status
        already says it was started."""
        if request.status.get("phase") in (IN_PROGRESS, SUCCEEDED, FAILED):
            return
        instance = self.objects.get_instance(request.namespace, request.instance)
        if instance is None:
            self._fail(
                request,
                INSTANCE_NOT_FOUND,
                f"spec.instance: Instance {request.instance!r} does not exist",
            )
            return
        if self.objects.get_image(request.image_name) is not None:
            self._fail(
                request, IMAGE_EXISTS, f"spec.imageName: Image {request.image_name!r} exists"
            )
            return
        uid = str(instance["metadata"]["uid"])
        refusal: str | None = None
        started: tuple[models.Instance, ActionView | None] | None = None
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, uid)
            if record is None:
                # Not scheduled yet: no record, still building.
                refusal = operations.SNAPSHOT.refusal(states.BUILDING, None)
            elif record.task_state == operations.SNAPSHOT.task_state and (
                db_api.action_get(session, uid, request.request_id) is not None
            ):
                # Started by a process that stopped before it said so: said now, not cast
                # again (if that cast was lost too, finish_stale rolls the snapshot back).
                LOG.info("instance %s: snapshot %s is under way", uid, request.name)
                started = (record, None)
            else:
                refusal = operations.SNAPSHOT.refusal(record.vm_state, record.task_state)
                refusal = refusal or self._host_refusal(session, record)
                if refusal is None:
                    db_api.instance_set(session, record, task_state=operations.SNAPSHOT.task_state)
                    action = db_api.action_start(
                        session, uid, ACTION, request.request_id, instance=record
                    )
                    started = (record, ActionView.from_rows(record, action, []))
        if refusal is not None or started is None:
            self._fail(request, REFUSED, refusal or "cannot snapshot")
            return
        record, view = started
        assert record.host is not None
        if view is not None:
            self.history.record(view)
        snapshot_requests.write_status(
            self.objects,
            request.namespace,
            request.name,
            request.status,
            {
                "phase": IN_PROGRESS,
                "observedGeneration": request.generation,
                "instanceUID": uid,
                "host": record.host,
                "requestId": request.request_id,
                "imageName": request.image_name,
                "startTime": timestamp(self.clock()),
            },
            condition(
                READY,
                False,
                IN_PROGRESS,
                f"taking a snapshot of instance {request.instance} on host {record.host}",
                request.status.get("conditions"),
                request.generation,
            ),
        )
        if view is None:
            return
        # The status is written before the cast: the host's answer must come after it.
        self.compute.snapshot_instance(
            record.host,
            payloads.SnapshotInstance(
                instance_uuid=uid,
                snapshot_name=request.name,
                snapshot_uid=request.uid,
                image_name=request.image_name,
                upload_url=upload_url(self.image_server_url, request),
            ),
            request.request_id,
        )
        self.projector.project(uid, record=record)
        LOG.info("instance %s: snapshot %s cast to %s", uid, request.name, record.host)

    def _host_refusal(self, session: Any, record: models.Instance) -> str | None:
        if record.host is None:
            return "cannot snapshot: the instance is placed on no host"
        if not db_api.host_is_up(session, record.host, self.service_down_time_s):
            return f"cannot snapshot: its host {record.host} is down"
        return None

    # -- from the host -------------------------------------------------------------------

    def snapshot_finished(self, report: payloads.SnapshotFinished, request_id: str) -> None:
        """Record the end of a snapshot: the instance's task and action, the Image, the
        InstanceSnapshot's status."""
        view: ActionView | None = None
        with db_engine.transaction(self.session_factory) as session:
            # A deleted instance's record still says what the image was made from.
            record = db_api.instance_lock(session, report.instance_uuid, read_deleted=True)
            if record is None:
                raise PermanentFailure(f"snapshot of unknown instance {report.instance_uuid}")
            if record.host != report.host:
                raise PermanentFailure(
                    f"host {report.host!r} reported a snapshot of {report.instance_uuid}, "
                    f"which is assigned to {record.host!r}"
                )
            under_way = not record.deleted and record.task_state == operations.SNAPSHOT.task_state
            # Deleted, or being deleted (the delete replaced the task): no Image, whatever
            # the host made.
            gone = bool(record.deleted) or record.task_state == states.DELETING
            why = snapshot_requests.deleted_message(record.name) if gone else report.message
            if under_way:
                db_api.instance_set(
                    session,
                    record,
                    task_state=None,
                    vm_state=report.vm_state,
                    power_state=report.power_state,
                    addresses=list(report.addresses),
                )
            action = db_api.action_get(session, report.instance_uuid, request_id)
            if action is not None and action.finish_time is None:
                action, _ = db_api.action_event_record(
                    session,
                    report.instance_uuid,
                    request_id,
                    operations.SNAPSHOT.event,
                    report.result,
                    host=report.host,
                    start_time=report.started_at,
                    finish_time=report.finished_at,
                    details=report.message,
                )
                action = db_api.action_finish(
                    session, report.instance_uuid, request_id, message=snapshot_requests.short(why)
                )
                view = ActionView.from_rows(
                    record,
                    action,
                    db_api.action_events(session, action.id),
                    result=action_history.ERROR if gone else None,
                )
        snapshot = self.objects.get_snapshot(record.namespace, report.snapshot_name)
        if snapshot is not None and snapshot["metadata"].get("uid") != report.snapshot_uid:
            snapshot = None  # deleted, and another made with its name: not this one's status
        ended = ((snapshot or {}).get("status") or {}).get("phase") in (SUCCEEDED, FAILED)
        if ended or (view is None and not under_way and not gone):
            # A second answer (a message delivered again, whose upload the image server
            # refused) or one that comes after a roll back: the first end stands.
            LOG.info(
                "snapshot %s of %s has ended already; %s from %s ignored",
                report.snapshot_name,
                record.uuid,
                report.result,
                report.host,
            )
            return
        reason: str | None
        if gone:
            # The upload stays on the image server, and no Image points at it.
            reason, message = INSTANCE_DELETED, snapshot_requests.deleted_message(record.name)
        elif report.result == db_api.EVENT_RESULT_SUCCESS:
            description = ((snapshot or {}).get("spec") or {}).get("description")
            reason, message = self._make_image(report, record, description)
        else:
            reason, message = SNAPSHOT_FAILED, f"on host {report.host}: {report.message}"
        if snapshot is not None:
            self._finish_status(snapshot, report, reason, message)
        elif reason is not None:
            LOG.warning("snapshot %s of %s: %s", report.snapshot_name, record.uuid, message)
        if under_way:
            self.projector.project(record.uuid, record=record, host_up=True)
        if view is not None:
            self.history.record(view)

    def _make_image(
        self,
        report: payloads.SnapshotFinished,
        record: models.Instance,
        description: str | None = None,
    ) -> tuple[str | None, str]:
        """Create the Image; (None, message) when it is there, else why it is not."""
        if report.url is None or report.sha256 is None:
            return SNAPSHOT_FAILED, f"host {report.host} reported no uploaded image"
        body = image_body(report, record, description)
        if not self.objects.create_image(body):
            existing = self.objects.get_image(report.image_name) or {}
            if (existing.get("spec") or {}).get("sha256") != report.sha256:
                return IMAGE_EXISTS, (
                    f"Image {report.image_name!r} was made by someone else meanwhile; the "
                    f"snapshot stays at {report.url}"
                )
        LOG.info("image %s made from instance %s", report.image_name, record.uuid)
        return None, f"Image {report.image_name} is made ({report.size_bytes} bytes)"

    def _finish_status(
        self,
        snapshot: dict[str, Any],
        report: payloads.SnapshotFinished,
        reason: str | None,
        message: str,
    ) -> None:
        meta, previous = snapshot["metadata"], dict(snapshot.get("status") or {})
        generation = int(meta.get("generation") or 1)
        status: dict[str, Any] = {
            "phase": SUCCEEDED if reason is None else FAILED,
            "observedGeneration": generation,
            "finishTime": timestamp(report.finished_at),
        }
        if reason is None:
            status.update(sha256=report.sha256, sizeBytes=report.size_bytes, url=report.url)
        ready = condition(
            READY,
            reason is None,
            reason or SUCCEEDED,
            message[:MESSAGE_MAX],
            previous.get("conditions"),
            generation,
        )
        snapshot_requests.write_status(
            self.objects, meta["namespace"], meta["name"], previous, status, ready
        )
        if reason is not None:
            self.objects.post_event(snapshot, reason=reason, message=message)

    # -- snapshots whose host never answered ---------------------------------------------

    def finish_stale(self, now: datetime.datetime | None = None) -> None:
        """Roll back snapshots whose host has not answered within ``timeout_s`` (see
        :mod:`kubenova.conductor.stale_snapshots`)."""
        self._stale.finish_stale(now or self.clock())

    # -- helpers -------------------------------------------------------------------------

    def _fail(self, request: SnapshotRequest, reason: str, message: str) -> None:
        LOG.warning("instancesnapshot %s/%s: %s", request.namespace, request.name, message)
        snapshot_requests.write_status(
            self.objects,
            request.namespace,
            request.name,
            request.status,
            {"phase": FAILED, "observedGeneration": request.generation},
            condition(
                READY,
                False,
                reason,
                message[:MESSAGE_MAX],
                request.status.get("conditions"),
                request.generation,
            ),
        )
        self.objects.post_event(request.reference(), reason=reason, message=message)
