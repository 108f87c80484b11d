"""Evacuation through the conductor (Nova's evacuate): the instance of a host that is down,
rebuilt from its image on another host.

An InstanceMigration of type Evacuate starts it (:mod:`kubenova.conductor.instance_migrations`
refuses it while the host is up and swaps in the task ``rebuild_spawning``); then:

1. :meth:`Evacuations.start`: the scheduler picks a destination for the same flavor (the
   source left out; the filters, the zone and the server group hold; ``spec.targetHost`` when
   given) and the claim holds both hosts as a move's does: the migration takes over the
   source's allocations, the instance claims the destination
   (:func:`kubenova.db.moves.claim_move`). The record moves to the destination at once, so its
   reports are the ones that count, and the create's own message, ``build_and_run_instance``,
   is cast there. Nothing is copied: what the disk held is lost, as in Nova without shared
   storage, and the destination needs no migration URI.
2. The destination's report ends it (``InstanceReports`` hands it over): the migration is
   ``done``, the instance active, the action a Success. An instance that was stopped is built
   running and stopped at once by a ``stop`` action of its own (Nova's rebuild keeps the power
   state). A failed build is not rescheduled: the record goes back to its source in Error
   (the only copy of its disk is there), the destination's claim is freed and the source's
   handed back, the migration ``failed``.
3. The source coming back: its guest is no longer the instance. ``terminate_instance`` is cast
   to the source's durable queue when the evacuation is done, and again whenever its
   heartbeat lists the guest; its reports about the guest change nothing. Once it no longer
   holds the guest (its ``instance_terminated``, or a heartbeat without it) the migration's
   allocations there are freed and the migration is ``completed``. Deleting the instance
   meanwhile frees them at once (:func:`kubenova.db.moves.abandon_moves`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubenova.compute import operations, states
from kubenova.conductor import faults
from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.compute_tasks import instance_payload
from kubenova.conductor.projector import InstanceProjector
from kubenova.conductor.resize_records import MoveRefused, ResizeRecords
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, envelope, payloads
from kubenova.scheduler.manager import SchedulerManager

LOG = logging.getLogger(__name__)

#: How long this process trusts its list of the hosts awaited back (sources of evacuations
#: done) before reading it again: another operator process may have evacuated meanwhile.
SOURCES_REFRESH_S = 60.0
#: A guest that a returning source still lists this long after its terminate was cast gets
#: another one (the first may have been lost, or be waiting behind a slow build).
TERMINATE_AGAIN_S = 60.0
#: The destination's part of an evacuation, as Nova names it.
_REBUILD_EVENT = "compute_rebuild_instance"


class Evacuations(ResizeRecords):
    """Starts evacuations, ends them from the destination's report, and clears their
    sources when those hosts return."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        scheduler: SchedulerManager,
        compute: compute_rpcapi.ComputeAPI,
        projector: InstanceProjector,
        history: ActionHistory,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, session_factory, kube, scheduler, compute, projector, history)
        self._clock = clock
        self._lock = threading.Lock()
        # Hosts awaited back, and when they were read (``clock``).
        self._sources: set[str] = set()
        self._sources_read_at = -math.inf
        # (host, instance uuid) -> when a terminate was last cast for it (``clock``).
        self._terminated_at: dict[tuple[str, str], float] = {}

    # -- from an InstanceMigration (the task state swapped in, the action started) -----

    def start(
        self,
        record: models.Instance,
        flavor: Mapping[str, Any],
        spec: Mapping[str, Any],
        request_id: str,
        *,
        migration_type: str = moves.EVACUATION,
        target_host: str | None = None,
        object_ref: tuple[str, str] | None = None,
    ) -> str:
        """Schedule and claim a destination, record the instance there and cast its build;
        the migration's uuid. When no host takes it, the operation is ended and
        :class:`MoveRefused` says why."""
        migration_uuid, dest = self._claim(
            record,
            flavor,
            spec,
            request_id,
            migration_type=moves.EVACUATION,
            target_host=target_host,
            object_ref=object_ref,
            refusal="cannot evacuate",
        )
        with db_engine.transaction(self.session_factory) as session:
            current = db_api.instance_lock(session, record.uuid)
            migration = moves.migration_get(session, migration_uuid)
            if current is None or migration is None:
                raise MoveRefused("the instance was deleted")
            # From here on the destination's reports are the instance's; the source's are not.
            db_api.instance_set(
                session,
                current,
                host=dest,
                node=migration.dest_node,
                power_state=states.NOSTATE,
                addresses=[],
            )
            moves.migration_set_status(session, migration, moves.MIGRATING)
            source = migration.source_compute
        LOG.warning("instance %s: evacuating from %s (down) to %s", record.uuid, source, dest)
        self.compute.build_and_run_instance(dest, instance_payload(current), request_id)
        self.on_migration_changed(migration_uuid)
        self.projector.project(record.uuid, record=current)
        return migration_uuid

    def recast(self, record: models.Instance, request_id: str) -> None:
        """Cast the build once more, once per process (an operator that died before casting
        it, a destination that never answered; a build delivered twice does no harm). An
        evacuation interrupted before its destination was claimed is ended: it is asked for
        again."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_in_progress(session, record.uuid)
            claimed = (
                migration is not None
                and migration.migration_type == moves.EVACUATION
                and migration.dest_compute == record.host
            )
            migration_uuid = migration.uuid if migration is not None else ""
        if not claimed or record.host is None:
            self._end_operation(
                record.uuid,
                request_id,
                "evacuation interrupted before a destination was claimed; ask for it again",
                failed=True,
            )
            return
        if not self._first_recast(migration_uuid, "build"):
            return
        LOG.warning("instance %s: evacuation to %s under way; cast again", record.uuid, record.host)
        self.compute.build_and_run_instance(record.host, instance_payload(record), request_id)

    # -- from the destination -----------------------------------------------------------

    def build_reported(self, update: payloads.InstanceUpdate) -> None:
        """The destination reports the guest it built for the evacuation under way (its
        agent reports only once the build is over): end the evacuation."""
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, update.instance_uuid)
            migration = moves.migration_in_progress(session, update.instance_uuid)
            if record is None or migration is None or not _built_by(record, migration, update):
                return  # a duplicate: the first one ended it
            request_id = migration.request_id or ""
            was_stopped = record.vm_state == states.STOPPED
            _record_event(session, record.uuid, request_id, update.host, None)
            moves.migration_set_status(session, migration, moves.EVACUATED)
            migration.finished_at = models.utcnow()
            migration_uuid, source = migration.uuid, migration.source_compute
        running = update.power_state == states.RUNNING
        values: dict[str, Any] = {
            "vm_state": states.ACTIVE if running else states.STOPPED,
            "power_state": update.power_state,
            "addresses": list(update.addresses),
            "launched_at": update.launched_at or models.utcnow(),
        }
        if update.vm_state == states.ERROR:
            values["vm_state"] = states.ERROR
        stop_again = was_stopped and running
        if stop_again:
            # Still busy when the evacuation ends: nothing else starts before the stop.
            values["task_state"] = operations.STOP.task_state
        self._end_operation(record.uuid, request_id, None, failed=False, values=values)
        with self._lock:
            self._sources.add(source)
        self._terminate(source, record.uuid)
        self.on_migration_changed(migration_uuid)
        if stop_again:
            self._stop_again(record.uuid, update.host)

    def build_failed(self, failure: payloads.InstanceBuildFailed) -> bool:
        """A build failed: if it was an evacuation's, end the evacuation in Error with the
        instance back on its source; whether it was."""
        message = f"cannot evacuate: the build on {failure.host} failed: {failure.message}"
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, failure.instance_uuid)
            migration = moves.migration_in_progress(session, failure.instance_uuid)
            if record is None or migration is None or not _built_by(record, migration, failure):
                return False
            request_id = migration.request_id or ""
            _record_event(session, record.uuid, request_id, failure.host, failure.message)
            code = faults.build_fault_code(failure, rescheduled=False)
            db_api.fault_create(session, record.uuid, code, message, failure.reason, failure.host)
            migration_uuid = migration.uuid
            source, source_node = migration.source_compute, migration.source_node
        # The destination's claim goes and the source's comes back to the instance: the only
        # copy of its disk is there, for a rebuild or a reboot once that host returns.
        moves.revert_move(self.session_factory, migration_uuid, moves.FAILED, message)
        values = {"vm_state": states.ERROR, "host": source, "node": source_node}
        self._end_operation(record.uuid, request_id, message, failed=True, values=values)
        self.on_migration_changed(migration_uuid)
        return True

    # -- from the source, when its host returns -----------------------------------------

    def source_reported(self, host: str, instance_uuids: tuple[str, ...]) -> None:
        """A heartbeat of ``host`` listing the guests it holds: terminate those evacuated
        from it, and free the source's claim of those it no longer holds."""
        if host not in self._awaited_sources():
            return
        with db_engine.transaction(self.session_factory) as session:
            awaiting = moves.evacuations_awaiting(session, host)
        listed = set(instance_uuids)
        for migration_uuid, instance_uuid in awaiting:
            if instance_uuid in listed:
                self._terminate(host, instance_uuid)
                continue
            with db_engine.transaction(self.session_factory) as session:
                completed = moves.complete_evacuation(session, migration_uuid)
            if completed:
                LOG.info("host %s no longer holds evacuated %s: freed", host, instance_uuid)
                self._forget_terminate(host, instance_uuid)
        if all(instance_uuid not in listed for _, instance_uuid in awaiting):
            with self._lock:
                self._sources.discard(host)

    def report_from_source(self, session: Any, instance_uuid: str, host: str) -> bool:
        """Whether ``host`` is a host the instance was evacuated from (its report then
        changes nothing; a guest it still runs is terminated), in the reporter's
        transaction."""
        migration = moves.evacuation_from(session, instance_uuid, host)
        if migration is None:
            return False
        LOG.info("host %s reported %s, evacuated from it: ignored", host, instance_uuid)
        if migration.status == moves.EVACUATED:
            self._terminate(host, instance_uuid)
        return True

    def source_dropped(self, session: Any, instance_uuid: str, host: str) -> bool:
        """``host`` terminated the instance: if it was evacuated from there, free the
        migration's claim there (in the reporter's transaction); whether it was."""
        migration = moves.evacuation_from(session, instance_uuid, host)
        if migration is None:
            return False
        if moves.complete_evacuation(session, migration.uuid):
            LOG.info("host %s dropped evacuated %s: its claim there is freed", host, instance_uuid)
            self._forget_terminate(host, instance_uuid)
        return True

    # -- helpers --------------------------------------------------------------------------

    def _awaited_sources(self) -> set[str]:
        now = self._clock()
        with self._lock:
            if now - self._sources_read_at < SOURCES_REFRESH_S:
                return set(self._sources)
        with db_engine.transaction(self.session_factory) as session:
            sources = moves.evacuated_sources(session)
        with self._lock:
            self._sources, self._sources_read_at = sources, now
        return set(sources)

    def _terminate(self, host: str, instance_uuid: str) -> None:
        """Cast ``terminate_instance`` to ``host`` unless one went lately (the agent's
        terminate is idempotent; a heartbeat every few seconds need not cast each time)."""
        now = self._clock()
        key = (host, instance_uuid)
        with self._lock:
            if now - self._terminated_at.get(key, -math.inf) < TERMINATE_AGAIN_S:
                return
            self._terminated_at[key] = now
        LOG.warning("host %s: terminating %s, evacuated from it", host, instance_uuid)
        self.compute.terminate_instance(host, instance_uuid, envelope.new_request_id())

    def _forget_terminate(self, host: str, instance_uuid: str) -> None:
        with self._lock:
            self._terminated_at.pop((host, instance_uuid), None)

    def _stop_again(self, instance_uuid: str, host: str) -> None:
        """Stop an instance that was stopped before it was evacuated (its task state is
        swapped in already); the stop's report ends it as any stop's does."""
        request_id = envelope.new_request_id()
        message = "stopped before it was evacuated: stopped again on its new host"
        with db_engine.transaction(self.session_factory) as session:
            current = db_api.instance_lock(session, instance_uuid)
            if current is None or current.task_state != operations.STOP.task_state:
                return
            action = db_api.action_start(
                session, instance_uuid, operations.STOP.name, request_id, message, instance=current
            )
            view = ActionView.from_rows(current, action, [])
        self.history.record(view)
        self.compute.stop_instance(
            host,
            instance_uuid,
            request_id,
            clean_shutdown=True,
            shutdown_timeout_s=self.settings.shutdown_timeout_s,
        )


def _built_by(
    record: models.Instance,
    migration: models.Migration,
    report: payloads.InstanceUpdate | payloads.InstanceBuildFailed,
) -> bool:
    """Whether ``report`` is the destination's answer to the evacuation under way."""
    return (
        record.task_state == states.REBUILD_SPAWNING
        and migration.migration_type == moves.EVACUATION
        and migration.dest_compute == report.host == record.host
    )


def _record_event(
    session: Any, instance_uuid: str, request_id: str, host: str, error: str | None
) -> None:
    """The destination's event in the evacuate action (``error``: why it failed)."""
    result = db_api.EVENT_RESULT_SUCCESS if error is None else db_api.EVENT_RESULT_ERROR
    with contextlib.suppress(db_api.InstanceActionNotFoundError):
        db_api.action_event_record(
            session,
            instance_uuid,
            request_id,
            _REBUILD_EVENT,
            result,
            host=host,
            start_time=None,
            finish_time=models.utcnow(),
            details=error,
        )
