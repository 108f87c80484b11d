"""InstanceMigrations through the conductor (Nova's migrate, live-migrate and evacuate): a
request object that moves an instance to another host. ``spec.type`` picks the road: Cold goes
down the resize's road with the same flavor (:mod:`kubenova.conductor.resize`), confirmed at
once; Live is :mod:`kubenova.conductor.live_migration`; Evacuate, for an instance whose host is
down, is :mod:`kubenova.conductor.evacuate`. Refusals by state and by the host's liveness are
decided here, for all three.

The object's status is a projection of its migration record, written at each step, with
KubeVirt's phases: Scheduling while a target is chosen and claimed, Scheduled, Running while
the guest moves, then Succeeded or Failed (a live move's progress and libvirt's figures are
written into it too). Deleting an unfinished object asks for the move to be undone: a cold
one before the guest has moved (the copy is removed and the guest started again on its
source), a live one before the switch-over (it is aborted); after that the move completes. An
evacuation is not undone: its source is down.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from kubenova.compute import operations
from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.instance_status import condition, merge_conditions, timestamp
from kubenova.conductor.live_migration import LiveMigrations
from kubenova.conductor.resize import Resizes
from kubenova.conductor.resize_records import MoveRefused
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves

LOG = logging.getLogger(__name__)

#: A migration's status -> the InstanceMigration's phase.
_PHASES = {
    moves.PRE_MIGRATING: "Scheduled",
    moves.MIGRATING: "Running",
    moves.POST_MIGRATING: "Running",
    moves.CONFIRMING: "Running",
    moves.SOURCE_CLEANED: "Running",
    moves.REVERTING: "Running",
    moves.CONFIRMED: "Succeeded",
    moves.REVERTED: "Failed",
    moves.ERROR: "Failed",
    "cancelled": "Failed",
    "failed": "Failed",
    # An evacuation: rebuilt on its new host (the source's claim awaits that host's return),
    # then that host cleared.
    moves.EVACUATED: "Succeeded",
    moves.COMPLETED: "Succeeded",
}


COLD, LIVE, EVACUATE = "Cold", "Live", "Evacuate"
#: ``spec.type`` -> the operation it is, and the migration record's type.
_OPERATIONS = {
    COLD: operations.MIGRATE, LIVE: operations.LIVE_MIGRATE, EVACUATE: operations.EVACUATE
}  # fmt: skip
_MIGRATION_TYPES = {COLD: moves.COLD, LIVE: moves.LIVE, EVACUATE: moves.EVACUATION}


class MoveStarter(Protocol):
    """Starts one type of move, as :meth:`Resizes.start` starts a cold one; raises
    :class:`MoveRefused` when no host takes it (the operation then ended)."""

    def __call__(
        self,
        record: models.Instance,
        flavor: Mapping[str, Any],
        spec: Mapping[str, Any],
        request_id: str,
        *,
        migration_type: str,
        target_host: str | None,
        object_ref: tuple[str, str] | None,
    ) -> str: ...


class MigrationObjects(Protocol):
    """What the migration road asks of the apiserver (``k8s.migrations``)."""

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def patch_migration_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool: ...


@dataclasses.dataclass(frozen=True)
class MigrationRequest:
    """One InstanceMigration object, as the handler sees it."""

    namespace: str
    name: str
    uid: str
    generation: int
    instance: str
    target_host: str | None = None
    #: Cold, Live or Evacuate (the CRD's ``spec.type``).
    type: str = "Cold"
    status: dict[str, Any] = dataclasses.field(default_factory=dict)


def request_id_of(migration_uid: str) -> str:
    """The request id of the move an InstanceMigration asks for."""
    return f"req-{migration_uid}"


class InstanceMigrations:
    """Starts the moves InstanceMigrations ask for, projects their status, cancels them."""

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        objects: MigrationObjects,
        resizes: Resizes,
        history: ActionHistory,
        *,
        service_down_time_s: int,
    ) -> None:
        self.session_factory = session_factory
        self.objects = objects
        self.resizes = resizes
        self.history = history
        self.service_down_time_s = service_down_time_s
        resizes.on_migration_changed = self.project
        #: How a Live or an Evacuate move starts (registered by their conductors).
        self.starters: dict[str, MoveStarter] = {}
        self.live: LiveMigrations | None = None
        # The status last projected for each unfinished migration: a step that changes no
        # field (most steps of a move keep the phase Running) costs no status write, which
        # would otherwise hold up the instance's next report on its lane.
        self._projected: dict[str, dict[str, Any]] = {}
        self._projected_lock = threading.Lock()
        # One projection of a migration at a time: a step's projection may run beside the
        # one of the step before it (a move's first step is cast before its status is
        # written), and the later read of the record must be the later write.
        self._projecting: dict[str, threading.Lock] = {}

    def create(self, request: MigrationRequest) -> None:
        """Start the move, or say in the object's status why it is refused."""
        instance = self.objects.get_instance(request.namespace, request.instance)
        if instance is None:
            self._failed(
                request,
                "InstanceNotFound",
                f"spec.instance: Instance {request.instance!r} does not exist "
                f"in namespace {request.namespace!r}",
            )
            return
        uuid = instance["metadata"]["uid"]
        request_id = request_id_of(request.uid)
        operation = _OPERATIONS[request.type]
        refusal: str | None = None
        with db_engine.transaction(self.session_factory) as session:
            if moves.migration_of_object(session, request.uid) is not None:
                return  # started already (a handler run again)
            record = db_api.instance_lock(session, uuid)
            if record is None:
                refusal = f"instance {request.instance} is not built yet"
            else:
                refusal = operation.refusal(
                    record.vm_state, record.task_state
                ) or self._host_refusal(session, request, record)
            if refusal is None:
                assert record is not None
                db_api.instance_set(session, record, task_state=operation.task_state)
                action = db_api.action_start(
                    session, uuid, operation.name, request_id, instance=record
                )
                view = ActionView.from_rows(record, action, [])
        if refusal is not None:
            self._failed(request, "InvalidState", refusal)
            return
        assert record is not None
        self.history.record(view)
        self._write(request.namespace, request.name, {
            "phase": "Scheduling", "sourceHost": record.host,
            "startTimestamp": timestamp(models.utcnow()),
            "observedGeneration": request.generation,
        })  # fmt: skip
        start = self.resizes.start if request.type == COLD else self.starters[request.type]
        try:
            start(
                record,
                record.flavor,
                dict(instance.get("spec") or {}),
                request_id,
                migration_type=_MIGRATION_TYPES[request.type],
                target_host=request.target_host,
                object_ref=(request.name, request.uid),
            )
        except MoveRefused as refused:
            self._failed(request, "NoValidHost", str(refused))

    def _host_refusal(
        self, session: Any, request: MigrationRequest, record: models.Instance
    ) -> str | None:
        """Why the instance's host (or the target asked for) rules the move out, if it does:
        only an evacuation leaves a host that is down, and only it may."""
        up = db_api.host_is_up(session, record.host or "", self.service_down_time_s)
        if request.type == EVACUATE and up:
            return (
                f"cannot evacuate: its host {record.host} is up (only the instances of a host "
                "that is down are evacuated; migrate this one)"
            )
        if request.type != EVACUATE and not up:
            return f"cannot migrate: its host {record.host} is down (evacuate it instead)"
        if request.target_host == record.host:
            return f"spec.targetHost: the instance already runs on {record.host}"
        return None

    def add_live(self, live: LiveMigrations) -> None:
        """Start Live moves with ``live``, and show its migrations' progress."""
        self.starters[LIVE] = live.start
        self.live = live
        live.on_migration_changed = self.project
        live.on_migration_status = self.show

    def cancel(self, migration_uid: str) -> bool:
        """The object is being deleted: undo the move if it can still be undone (a cold one
        before the guest has moved, a live one before it has switched over); whether it
        will be."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_of_object(session, migration_uid)
            if migration is None or migration.status not in (moves.PRE_MIGRATING, moves.MIGRATING):
                return False
            if migration.migration_type == moves.EVACUATION:
                # Its source is down: there is nowhere to put the instance back.
                LOG.info("migration %s: an evacuation is not undone", migration_uid)
                return False
            if migration.migration_type == moves.LIVE:
                migration_uuid = migration.uuid
            else:
                migration.cancel_requested = True
                migration_uuid = None
        if migration_uuid is not None and self.live is not None:
            return self.live.abort(migration_uuid)
        LOG.info("migration %s: cancelled; the instance stays on its source", migration_uid)
        return True

    def show(self, migration_uuid: str, fields: dict[str, Any]) -> None:
        """Write ``fields`` into the status of the InstanceMigration behind
        ``migration_uuid``, if any (a live migration's progress and figures)."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_get(session, migration_uuid)
            if migration is None or migration.object_name is None:
                return
            record = db_api.instance_get(session, migration.instance_uuid, read_deleted=True)
            if record is None:
                return
            namespace, name = record.namespace, migration.object_name
        self._write(namespace, name, fields)

    def project(self, migration_uuid: str) -> None:
        """Write the status of the InstanceMigration behind ``migration_uuid``, if any."""
        with self._projected_lock:
            lock = self._projecting.setdefault(migration_uuid, threading.Lock())
        with lock:
            settled = self._project(migration_uuid)
        if settled:
            with self._projected_lock:
                self._projecting.pop(migration_uuid, None)

    def _project(self, migration_uuid: str) -> bool:
        """Write the status; whether the migration has no more to show (it ended, or has no
        InstanceMigration)."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_get(session, migration_uuid)
            if migration is None or migration.object_name is None:
                return True
            record = db_api.instance_get(session, migration.instance_uuid, read_deleted=True)
            if record is None:
                return True
            namespace, name = record.namespace, migration.object_name
            phase = _PHASES.get(migration.status, "Running")
            status: dict[str, Any] = {
                "phase": phase,
                "migration": migration.uuid,
                "sourceHost": migration.source_compute,
                "targetHost": migration.dest_compute,
                "message": migration.message,
            }
            if phase in ("Succeeded", "Failed"):
                status["endTimestamp"] = timestamp(migration.updated_at or models.utcnow())
        done = phase in ("Succeeded", "Failed")
        status["conditions"] = merge_conditions(
            None,
            [condition("Ready", done, phase, migration.message or phase.lower(), None, 1)],
        )
        # What the write would change (its condition follows from these; its transition time
        # is the moment of the write, not a change).
        shown = {key: value for key, value in status.items() if key != "conditions"}
        with self._projected_lock:
            if not done and self._projected.get(migration_uuid) == shown:
                return False
        written = self._write(namespace, name, status)
        with self._projected_lock:
            # Only what reached the object is remembered: a write that failed is made again
            # at the next step, even when nothing changed meanwhile.
            if written and not done:
                self._projected[migration_uuid] = shown
            else:
                self._projected.pop(migration_uuid, None)
        return done

    def _failed(self, request: MigrationRequest, reason: str, message: str) -> None:
        LOG.warning("instancemigration %s/%s: %s", request.namespace, request.name, message)
        self._write(request.namespace, request.name, {
            "phase": "Failed", "message": message,
            "endTimestamp": timestamp(models.utcnow()),
            "observedGeneration": request.generation,
            "conditions": merge_conditions(
                request.status.get("conditions"),
                [condition("Ready", False, reason, message, None, request.generation)],
            ),
        })  # fmt: skip

    def _write(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the object's; whether it was written."""
        try:
            return self.objects.patch_migration_status(namespace, name, status)
        except Exception:
            LOG.exception("could not write the status of instancemigration %s/%s", namespace, name)
            return False
