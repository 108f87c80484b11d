"""What hosts report about their instances: a change of state, a failed build (rescheduled
or ended in Error), a domain destroyed. Each report's sender has been checked against the
host it names (``ConductorManager``); here it is also checked against the record, so a host
can only speak of the instances assigned to it.
"""

from __future__ import annotations

import logging
from typing import Any

from kubenova.compute import states
from kubenova.conductor import console_ports, faults
from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.compute_tasks import ComputeTaskManager
from kubenova.conductor.create_finisher import CreateFinisher
from kubenova.conductor.evacuate import Evacuations
from kubenova.conductor.instance_operations import InstanceOperations
from kubenova.conductor.projector import InstanceProjector
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.exception import PermanentFailure
from kubenova.rpc import compute_rpcapi, envelope, payloads

LOG = logging.getLogger(__name__)

# The host's part of a create, as Nova names it.
_BUILD_EVENT = "compute_build_and_run_instance"


class InstanceReports:
    """Records what hosts report about instances and projects it into status."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        compute: compute_rpcapi.ComputeAPI,
        projector: InstanceProjector,
        tasks: ComputeTaskManager,
        operations: InstanceOperations,
        history: ActionHistory,
        creates: CreateFinisher,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.compute = compute
        self.projector = projector
        self.tasks = tasks
        self.operations = operations
        self.history = history
        self.creates = creates
        #: Evacuations: their destination's build report ends them, and the host they left
        #: is not heard about their instances (the conductor's wiring sets it).
        self.evacuations: Evacuations | None = None

    def instance_update(self, update: payloads.InstanceUpdate) -> None:
        """Record the host's view of one instance and project it into status.

        A report about an instance whose record was deleted (its host was down at the
        time) reaps the leftover domain: the conductor casts terminate back to the host.
        """
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, update.instance_uuid, read_deleted=True)
            if record is None:
                # Not ours at all: report it, never destroy what we did not make.
                LOG.warning(
                    "host %s reports instance %s, which has no record",
                    update.host,
                    update.instance_uuid,
                )
                return
            deleted = bool(record.deleted)
            if not deleted and record.host != update.host:
                if _moving_with(session, record.uuid, update.host):
                    # The other host of a resize under way (its guest set aside, or the new
                    # one not yet recorded): the migration's steps say what happens there.
                    return
                if self.evacuations is not None and self.evacuations.report_from_source(
                    session, record.uuid, update.host
                ):
                    return  # its guest there is no longer the instance
                raise PermanentFailure(
                    f"host {update.host!r} reported instance {update.instance_uuid}, "
                    f"which is assigned to {record.host!r}"
                )
            built: ActionView | None = None
            stopped_by_guest = unchanged = False
            # The guest an evacuation built (checked with no query: the task state says it).
            rebuilt = record.task_state == states.REBUILD_SPAWNING and not deleted
            if rebuilt and (ports := console_ports.values(update)):
                # The evacuation's own steps record the rest; where its consoles are is known
                # only from here.
                db_api.instance_set(session, record, **ports)
            if not deleted and not rebuilt:
                values: dict[str, Any] = {
                    "power_state": update.power_state,
                    "addresses": list(update.addresses),
                    **console_ports.values(update),
                }
                # An operation under way (a delete, a reboot...) owns the states until it
                # ends; meanwhile the agent's view only adds power and addresses. So do a
                # resize awaiting its confirmation (the host knows its guest runs, not that
                # the user has yet to keep it) and an instance in error.
                if record.task_state in (None, states.SPAWNING) and record.vm_state not in (
                    states.ERROR,
                    states.RESIZED,
                ):
                    values["vm_state"] = update.vm_state
                    values["task_state"] = update.task_state
                    stopped_by_guest = (
                        record.task_state is None
                        and record.vm_state == states.ACTIVE
                        and update.vm_state in (states.STOPPED, states.ERROR)
                    )
                if update.launched_at is not None and record.launched_at is None:
                    values["launched_at"] = update.launched_at
                    # Nova resets a host's build failure count on a successful build.
                    db_api.compute_node_clear_build_failures(session, update.host)
                if all(getattr(record, key) == value for key, value in values.items()):
                    # What the record already says: the agent's "spawning", say, or a report
                    # handled again because its first handling failed once it had committed
                    # (a database restarting under the commit), before the status was written.
                    unchanged = True
                else:
                    db_api.instance_set(session, record, **values)
                    if "launched_at" in values:
                        built = self._finish_create(session, record, update)
        if unchanged:
            self.projector.project_if_remembered(update.instance_uuid, record=record, host_up=True)
            return
        if rebuilt and self.evacuations is not None:
            self.evacuations.build_reported(update)
            return
        if deleted:
            LOG.warning(
                "host %s still runs deleted instance %s; reaping it",
                update.host,
                update.instance_uuid,
            )
            self.compute.terminate_instance(
                update.host, update.instance_uuid, envelope.new_request_id()
            )
            return
        # The host just reported, so it is up.
        self.projector.project(update.instance_uuid, record=record, host_up=True)
        if built is not None:
            self.history.record(built)
        if stopped_by_guest:
            self.operations.guest_stopped(record)

    def _finish_create(
        self, session: Any, record: models.Instance, update: payloads.InstanceUpdate
    ) -> ActionView | None:
        """The build succeeded: the end of the create action, with its build event. A first
        try ends with the next batch (``creates``: no statement here, as every create ends
        the same way); a rescheduled create ends now, with its object showing every host's
        event."""
        request_id = record.request_id
        if request_id is None:
            return None
        if (record.attempts or 1) <= 1:
            # Its object is not written either: the Instance's status says all it would
            # (request id, host, launch time), and `kubectl nova events` shows it from there.
            self.creates.add(record.uuid)
            return None
        finished = update.launched_at or models.utcnow()
        if not db_api.action_finish_with_event(
            session,
            record.uuid,
            request_id,
            "create",
            _BUILD_EVENT,
            db_api.EVENT_RESULT_SUCCESS,
            host=update.host,
            finish_time=finished,
        ):
            LOG.info("instance %s: no create action of %s to finish", record.uuid, request_id)
            return None
        action = db_api.action_get(session, record.uuid, request_id)
        if action is None:
            return None
        events = db_api.action_events(session, action.id)
        return ActionView.from_rows(record, action, events, result="Success")

    def _record_build_event(
        self, session: Any, record: models.Instance, failure: payloads.InstanceBuildFailed
    ) -> None:
        if record.request_id is None:
            return
        try:
            db_api.action_event_record(
                session,
                record.uuid,
                record.request_id,
                _BUILD_EVENT,
                db_api.EVENT_RESULT_ERROR,
                host=failure.host,
                start_time=None,
                finish_time=models.utcnow(),
                details=failure.message,
            )
        except db_api.InstanceActionNotFoundError:
            LOG.info("instance %s: no create action to record the failure in", record.uuid)

    def instance_build_failed(self, failure: payloads.InstanceBuildFailed) -> None:
        """A build failed on its host: build again elsewhere, or go to Error.

        As Nova's conductor does: the failed host's claim is freed and its build failures
        counted (the BuildFailureWeigher avoids it), then, while attempts are left (up to
        ``max_attempts`` builds in all), the build goes down the scheduler's road again with
        every host tried so far ignored. A failure that is not reschedulable (a bad image),
        the last attempt, or a reschedule no host takes ends in Error with a fault that
        lists every host tried and why it failed, its code saying which way it ended
        (:mod:`kubenova.conductor.faults`). An evacuation's build is not rescheduled: the
        evacuation ends (:meth:`Evacuations.build_failed`).
        """
        if self.evacuations is not None and self.evacuations.build_failed(failure):
            return
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_get(session, failure.instance_uuid)
            if record is not None and _rescheduled_from(record, failure.host):
                # This failure was handled, and rescheduled to record.host, but the report
                # came again: the reschedule's cast may have been lost (the broker was away
                # and the report was not acknowledged). Cast it again; the agent's build is
                # idempotent, so a cast that did arrive has one effect.
                LOG.info(
                    "build failure of %s from %s was handled; casting the rebuild again",
                    failure.instance_uuid,
                    failure.host,
                )
                self.tasks.cast_again(record)
                return
            if record is None or record.host != failure.host:
                LOG.warning(
                    "ignoring a build failure of %s from %s", failure.instance_uuid, failure.host
                )
                return
            if record.task_state == states.DELETING:
                return  # the delete in flight finishes the job
            tried = [*(record.tried_hosts or []), {"host": failure.host, "reason": failure.message}]
            db_api.compute_node_record_build_failure(session, failure.host)
            db_api.instance_update(session, failure.instance_uuid, tried_hosts=tried)
            self._record_build_event(session, record, failure)
        db_api.release_resources(self.session_factory, failure.instance_uuid, clear_host=True)
        no_host: str | None = None
        if failure.reschedulable and (record.attempts or 1) < self.settings.max_attempts:
            no_host = self.tasks.reschedule(record, {t["host"] for t in tried})
            if no_host is None:
                return
        message = "build failed on {} host(s): {}".format(
            len(tried), "; ".join(f"{t['host']}: {t['reason']}" for t in tried)
        )
        if no_host is not None:
            # Why the instance did not get another attempt while it had some left.
            message += f"; no other host took it ({no_host})"
        with db_engine.transaction(self.session_factory) as session:
            db_api.fault_create(
                session,
                failure.instance_uuid,
                faults.build_fault_code(failure, rescheduled=no_host is not None),
                message,
                failure.reason,
                failure.host,
            )
            errored = db_api.instance_update(
                session, failure.instance_uuid, vm_state=states.ERROR, task_state=None
            )
            view = self._finish_action(session, errored, errored.request_id, message[:255])
        self.projector.project(failure.instance_uuid)
        if view is not None:
            self.history.record(view)

    def _finish_action(
        self, session: Any, record: models.Instance, request_id: str | None, message: str | None
    ) -> ActionView | None:
        """End the action of ``request_id`` with ``message``; its view for the history."""
        if request_id is None or db_api.action_get(session, record.uuid, request_id) is None:
            return None
        action = db_api.action_finish(session, record.uuid, request_id, message=message)
        return ActionView.from_rows(record, action, db_api.action_events(session, action.id))

    def instance_terminated(self, event: payloads.InstanceTerminated, request_id: str) -> None:
        """The host destroyed the domain: free the claim, end the delete action and
        soft-delete the record."""
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_get(session, event.instance_uuid)
            if record is None:
                return
            if record.host is None:
                # Placed nowhere (a build that ended in Error, or never placed): whatever
                # domain the host destroyed (an audit's leftover, say), the record, its
                # object and its fault stay until the Instance is deleted.
                LOG.warning(
                    "host %s terminated %s, which is assigned to no host; nothing to record",
                    event.host,
                    event.instance_uuid,
                )
                return
            if record.host != event.host:
                if _moving_with(session, record.uuid, event.host):
                    LOG.info("host %s removed its copy of %s", event.host, record.uuid)
                    return
                if self.evacuations is not None and self.evacuations.source_dropped(
                    session, record.uuid, event.host
                ):
                    return
                raise PermanentFailure(
                    f"host {event.host!r} terminated {event.instance_uuid}, "
                    f"which is assigned to {record.host!r}"
                )
        db_api.release_resources(self.session_factory, event.instance_uuid)
        with db_engine.transaction(self.session_factory) as session:
            db_api.instance_update(session, event.instance_uuid, power_state=states.NOSTATE)
            if db_api.action_get(session, event.instance_uuid, request_id) is not None:
                now = models.utcnow()
                db_api.action_event_record(
                    session,
                    event.instance_uuid,
                    request_id,
                    "compute_terminate_instance",
                    db_api.EVENT_RESULT_SUCCESS,
                    host=event.host,
                    start_time=None,
                    finish_time=now,
                )
                db_api.action_finish(session, event.instance_uuid, request_id)
            db_api.server_group_remove_member(session, event.instance_uuid)
            db_api.instance_soft_delete(session, event.instance_uuid)
        self.projector.forget(event.instance_uuid)


def _moving_with(session: Any, instance_uuid: str, host: str) -> bool:
    """Whether ``host`` is a host of the instance's migration under way."""
    migration = moves.migration_in_progress(session, instance_uuid)
    return migration is not None and host in (migration.source_compute, migration.dest_compute)


def _rescheduled_from(record: models.Instance, host: str) -> bool:
    """Whether ``record`` is building on another host after a build failed on ``host``."""
    return (
        record.vm_state == states.BUILDING
        and record.task_state == states.SPAWNING
        and record.host not in (None, host)
        and any(tried["host"] == host for tried in record.tried_hosts or [])
    )
