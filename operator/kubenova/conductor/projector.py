"""The projection of instance records into their Instance objects' status: the one door
through which the control plane writes an Instance's status.

:meth:`InstanceProjector.project` turns a record into status (:mod:`instance_status`),
compares it with what this process last wrote to the object (:mod:`last_written`, which
stands in for a GET) and hands a change to the :mod:`patch_queue`, which writes each
instance's projections in order. Nothing else touches that memory or that queue.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

from kubenova.compute import operations, states
from kubenova.conductor import instance_status, last_written, patch_queue
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.k8s.client import KubeClient


@dataclasses.dataclass(frozen=True)
class Projection:
    """A status to write into one Instance."""

    uid: str
    namespace: str
    name: str
    status: dict[str, Any]


class InstanceProjector:
    """Writes each instance's record into its status, when and only when it changed."""

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        *,
        service_down_time_s: int,
        building_status_delay_s: float = 0.0,
        resize_confirm_window_s: int = 0,
    ) -> None:
        self._session_factory = session_factory
        self._kube = kube
        self._service_down_time_s = service_down_time_s
        self._confirm_window_s = resize_confirm_window_s
        # Instance uid -> the status last written to it.
        self._last_written = last_written.LastWritten()
        self._queue: patch_queue.PatchQueue[Projection] = patch_queue.PatchQueue(
            self._patch, delay_s=building_status_delay_s
        )
        # Told the uuid of each instance whose record is gone (its delete is done); the
        # operator's wiring sets it, so the delete handler need not poll.
        self.on_gone: Callable[[str], None] = lambda _uuid: None

    def project(
        self,
        instance_uuid: str,
        *,
        record: models.Instance | None = None,
        host_up: bool | None = None,
        fault: dict[str, str] | None = None,
        current_status: dict[str, Any] | None = None,
        defer: bool = False,
        migration_type: str | None = None,
    ) -> None:
        """Write the instance's record into its status, if that changes it.

        A caller that holds what the projection needs passes it, and the database is not
        asked: ``record`` (current, detached), ``host_up`` (an agent that just reported, a
        host just claimed), ``fault``, ``migration_type`` (the type of the move under way,
        for a record in one of the resize's task states, which a cold migration shares).
        Otherwise they are read in one short transaction, which ends before the apiserver is
        asked anything. The status last written by this process stands in for a GET; failing
        that ``current_status`` (a caller holding the object passes it), and failing that the
        object is read.

        ``defer`` lets a newer projection of the same instance replace this one within the
        queue's delay (the Building status a build's Running report soon follows).
        """
        resize = None
        if record is None or self._needs_database(record, host_up, fault, migration_type):
            with db_engine.transaction(self._session_factory) as session:
                if record is None:
                    record = db_api.instance_get(session, instance_uuid)
                    if record is None:
                        return
                host_up, fault = self._database_view(session, record, host_up, fault)
                if record.vm_state == states.RESIZED or _moving_unsaid(record, migration_type):
                    migration = moves.migration_in_progress(session, record.uuid)
                    if migration is not None and migration_type is None:
                        migration_type = migration.migration_type
                    if record.vm_state == states.RESIZED:
                        resize = _resize_view(migration, self._confirm_window_s)
        previous = self._last_written.get(record.uuid)
        if previous is None:
            previous = current_status
        if previous is None:
            current = self._kube.get_instance(record.namespace, record.name)
            if current is None:
                return
            previous = dict(current.get("status") or {})
        status = instance_status.project(
            record,
            previous_conditions=previous.get("conditions"),
            host_up=True if host_up is None else host_up,  # None: no host to be down
            fault=fault,
            resize=resize,
            migration_type=migration_type,
        )
        if resize is None and previous.get("resize") is not None:
            status["resize"] = None  # the merge patch removes it
        # Remembered as soon as it is submitted, so the next projection is compared with it
        # even while it waits in the queue.
        self._last_written.remember(record.uuid, status)
        if last_written.changed_fields(previous, status):
            self._queue.submit(
                Projection(record.uuid, record.namespace, record.name, status), defer=defer
            )

    def project_if_remembered(
        self, instance_uuid: str, *, record: models.Instance, host_up: bool
    ) -> None:
        """:meth:`project`, where this process remembers the status it last wrote.

        For a report that changes nothing in the record: the object may still lack what the
        record says (the status of an earlier handling that failed before writing it), and
        the status remembered tells at no cost; with nothing remembered the only check is a
        GET, which such reports (one per build, and every host's after a restart) must not
        cost. An operator that starts again writes each Instance's status from its create
        handler instead.
        """
        if instance_uuid in self._last_written:
            self.project(instance_uuid, record=record, host_up=host_up)

    def project_host(self, host: str) -> None:
        """Project every instance on ``host`` again (its up/down state changed)."""
        with db_engine.transaction(self._session_factory) as session:
            affected = [record.uuid for record in db_api.instance_get_all(session, host=host)]
        for instance_uuid in affected:
            self.project(instance_uuid)

    def pending(
        self,
        instance_uuid: str,
        reason: str,
        message: str,
        *,
        previous_conditions: list[dict[str, Any]] | None,
        generation: int,
    ) -> dict[str, Any]:
        """The Pending status the api layer writes itself (with its retry), which this
        process's memory of the object must not contradict."""
        self._last_written.forget(instance_uuid)
        return instance_status.pending(
            reason, message, previous_conditions=previous_conditions, generation=generation
        )

    def forget(self, instance_uuid: str) -> None:
        """The instance is gone: drop what was remembered of its object, and say so."""
        self._last_written.forget(instance_uuid)
        self.on_gone(instance_uuid)

    def start(self) -> None:
        self._queue.start()

    def stop(self) -> None:
        self._queue.stop()

    def held(self) -> int:
        """Projections waiting in the queue."""
        return self._queue.held()

    def _needs_database(
        self,
        record: models.Instance,
        host_up: bool | None,
        fault: dict[str, str] | None,
        migration_type: str | None,
    ) -> bool:
        return (
            (host_up is None and record.host is not None)
            or (fault is None and record.vm_state == states.ERROR)
            or record.vm_state == states.RESIZED
            or _moving_unsaid(record, migration_type)
        )

    def _database_view(
        self,
        session: Any,
        record: models.Instance,
        host_up: bool | None,
        fault: dict[str, str] | None,
    ) -> tuple[bool, dict[str, str] | None]:
        """``host_up`` and ``fault`` for a projection, read from the database when not given."""
        if host_up is None:
            host_up = record.host is None or db_api.host_is_up(
                session, record.host, self._service_down_time_s
            )
        if fault is None and record.vm_state == states.ERROR:
            latest = db_api.fault_get_latest(session, record.uuid)
            if latest is not None:
                fault = {"reason": latest.details or "Error", "message": latest.message}
        return host_up, fault

    def _patch(self, projection: Projection) -> None:
        try:
            written = self._kube.patch_instance_status(
                projection.namespace, projection.name, projection.status
            )
        except Exception:
            # Not written after all: the retry, and any newer projection (a report handled
            # again finds its record unchanged), must not take the remembered status for the
            # object's, nor need a read of an apiserver that may still be away.
            self._last_written.mark_stale(projection.uid)
            raise
        if not written:
            self._last_written.forget(projection.uid)


def _moving_unsaid(record: models.Instance, migration_type: str | None) -> bool:
    """Whether ``record`` is in one of the resize's task states, which a resize and a cold
    migration share, and the caller did not say which of them is under way."""
    return migration_type is None and record.task_state in operations.RESIZE_TASK_STATES


def _resize_view(migration: models.Migration | None, window_s: int) -> dict[str, Any] | None:
    """What ``status.resize`` shows of the resize awaiting an answer (``migration``, the one
    in progress): the flavors and hosts, and when it confirms itself (Nova's
    resize_confirm_window; none when 0)."""
    if migration is None:
        return None
    view: dict[str, Any] = {
        "migration": migration.uuid,
        "oldFlavor": migration.old_flavor.get("name"),
        "newFlavor": migration.new_flavor.get("name"),
        "sourceHost": migration.source_compute,
        "destinationHost": migration.dest_compute,
    }
    if window_s > 0 and migration.finished_at is not None:
        deadline = migration.finished_at + datetime.timedelta(seconds=window_s)
        view["autoConfirmAt"] = instance_status.timestamp(deadline)
    return view
