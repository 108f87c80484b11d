"""Day-2 power operations through the conductor: the spec's powerState and reboot request
become one operation at a time, checked against the table of allowed states
(:mod:`kubenova.compute.operations`), its task state swapped in under a row lock (Nova's
``expected_task_state``), recorded as an instance action, cast to the instance's host, and
finished when the host reports back.

The spec is applied by generation: an Instance whose ``metadata.generation`` is newer than
its record's is reconciled; the record's generation (``status.observedGeneration``) moves
when the spec is applied, refused, or found applied already. A spec that changes while an
operation runs waits for it: the operation's end reconciles the object again.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from kubenova.compute import operations, states
from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.projector import InstanceProjector
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.exception import PermanentFailure
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, envelope, payloads

LOG = logging.getLogger(__name__)

REFUSED = "InvalidState"
FAILED = "OperationFailed"
GUEST_POWERED_OFF = "GuestPoweredOff"

_SYNC_MESSAGE_MAX = 1024


@dataclasses.dataclass(frozen=True)
class SpecChange:
    """An Instance whose spec may ask for something its record does not show yet."""

    uid: str
    namespace: str
    name: str
    generation: int
    spec: Mapping[str, Any]
    request_id: str


@dataclasses.dataclass(frozen=True)
class _Cast:
    """An operation accepted: what to cast, to whom, for which request."""

    operation: operations.Operation
    host: str
    request_id: str


class InstanceOperations:
    """Starts power operations from the spec, and finishes them from the hosts' reports."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        compute: compute_rpcapi.ComputeAPI,
        projector: InstanceProjector,
        history: ActionHistory,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.kube = kube
        self.compute = compute
        self.projector = projector
        self.history = history
        # Operations cast once more by the stale-operation sweep (uuid -> request id).
        self._recast: dict[str, str] = {}
        self._swept_once = False

    # -- from the spec ------------------------------------------------------------------

    def reconcile(self, change: SpecChange) -> None:
        """Apply ``change.spec`` if its generation is new: start the one operation it asks
        for, refuse it, or record that it is applied. An instance that is being built,
        deleted or operated on is left alone: the end of that task reconciles it again."""
        refusal: str | None = None
        accepted: _Cast | None = None
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, change.uid)
            if record is None or record.generation >= change.generation:
                return
            if record.vm_state in (states.BUILDING, states.DELETED) or record.task_state:
                return
            operation, stamp = _wanted(change.spec, record)
            values: dict[str, Any] = {"generation": change.generation}
            if stamp is not None:
                values["last_reboot_request"] = stamp  # acted on once, accepted or refused
            if operation is None:
                values.update(sync_reason=None, sync_message=None)
                db_api.instance_set(session, record, **values)
            else:
                refusal = operation.refusal(record.vm_state, record.task_state)
                if refusal is None:
                    refusal = self._host_refusal(session, operation, record)
                if refusal is not None:
                    values.update(sync_reason=REFUSED, sync_message=refusal[:_SYNC_MESSAGE_MAX])
                    db_api.instance_set(session, record, **values)
                else:
                    assert record.host is not None
                    values.update(
                        task_state=operation.task_state, sync_reason=None, sync_message=None
                    )
                    db_api.instance_set(session, record, **values)
                    action = db_api.action_start(
                        session, change.uid, operation.name, change.request_id, instance=record
                    )
                    accepted = _Cast(operation, record.host, change.request_id)
                    view = ActionView.from_rows(record, action, [])
        if refusal is not None:
            LOG.warning("instance %s: %s", change.uid, refusal)
            self._post_event(record, "InvalidState", refusal)
        if accepted is not None:
            self._cast(record.uuid, accepted)
            self.history.record(view)
        self.projector.project(record.uuid, record=record)

    def _host_refusal(
        self, session: Any, operation: operations.Operation, record: models.Instance
    ) -> str | None:
        if record.host is None:
            return f"cannot {operation.name}: the instance is placed on no host"
        if not db_api.host_is_up(session, record.host, self.settings.service_down_time_s):
            return f"cannot {operation.name}: its host {record.host} is down"
        return None

    def _cast(self, instance_uuid: str, cast: _Cast) -> None:
        operation = cast.operation
        timeout = self.settings.shutdown_timeout_s
        if operation is operations.STOP:
            self.compute.stop_instance(
                cast.host,
                instance_uuid,
                cast.request_id,
                clean_shutdown=True,
                shutdown_timeout_s=timeout,
            )
        elif operation in (operations.REBOOT_SOFT, operations.REBOOT_HARD):
            self.compute.reboot_instance(
                cast.host,
                instance_uuid,
                cast.request_id,
                reboot_type="HARD" if operation is operations.REBOOT_HARD else "SOFT",
                shutdown_timeout_s=timeout,
            )
        else:
            self.compute.instance_operation(
                cast.host, f"{operation.name}_instance", instance_uuid, cast.request_id
            )

    # -- from the hosts -----------------------------------------------------------------

    def operation_finished(
        self, report: payloads.InstanceOperationFinished, request_id: str
    ) -> None:
        """Record the end of an operation: the instance's states, the event, the action's
        end; then apply whatever the spec asked for meanwhile."""
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, report.instance_uuid)
            if record is None:
                return
            if record.host != report.host:
                raise PermanentFailure(
                    f"host {report.host!r} reported {report.operation} of "
                    f"{report.instance_uuid}, which is assigned to {record.host!r}"
                )
            operation = operations.BY_TASK_STATE.get(record.task_state or "")
            if operation is None or operation.name != report.operation:
                # A duplicate, or an operation already rolled back: the host's periodic
                # report brings the power state.
                LOG.info(
                    "instance %s: %s from %s is not under way (task %s); ignored",
                    report.instance_uuid,
                    report.operation,
                    report.host,
                    record.task_state,
                )
                return
            failed = report.result == db_api.EVENT_RESULT_ERROR
            values: dict[str, Any] = {
                "vm_state": report.vm_state,
                "task_state": None,
                "power_state": report.power_state,
                "addresses": list(report.addresses),
                "sync_reason": FAILED if failed else None,
                "sync_message": (
                    f"{operation.name} failed on host {report.host}: {report.message}"[
                        :_SYNC_MESSAGE_MAX
                    ]
                    if failed
                    else None
                ),
            }
            db_api.instance_set(session, record, **values)
            if db_api.action_get(session, report.instance_uuid, request_id) is None:
                # Started before this record kept its actions (or by hand): start it now.
                db_api.action_start(
                    session, report.instance_uuid, operation.name, request_id, instance=record
                )
            action, _ = db_api.action_event_record(
                session,
                report.instance_uuid,
                request_id,
                operation.event,
                report.result,
                host=report.host,
                start_time=report.started_at,
                finish_time=report.finished_at,
                details=report.message,
            )
            db_api.action_finish(
                session, report.instance_uuid, request_id, message=_short(report.message)
            )
            view = ActionView.from_rows(record, action, db_api.action_events(session, action.id))
        self._recast.pop(report.instance_uuid, None)
        if failed:
            self._post_event(record, FAILED, values["sync_message"])
        self.projector.project(record.uuid, record=record, host_up=True)
        # A spec changed meanwhile is applied next: this status patch's watch event brings
        # the object back to the api layer, whose generation check reconciles it.
        self.history.record(view)

    def guest_stopped(self, record: models.Instance) -> None:
        """The guest powered itself off (or crashed) with no operation under way. Under
        runStrategy Always, with a spec that wants it Running, start it again (a hard reboot
        for a crashed one); under Manual, say so in the Synced condition."""
        instance = self.kube.get_instance(record.namespace, record.name)
        if instance is None:
            return
        spec = instance.get("spec") or {}
        if spec.get("powerState", "Running") != "Running":
            return
        how = "crashed" if record.vm_state == states.ERROR else "powered itself off"
        if spec.get("runStrategy", "Always") == "Manual":
            message = (
                f"the guest {how}; spec.powerState says Running and spec.runStrategy is Manual: "
                f"start it with `kubectl nova start {record.name}`"
            )
            with db_engine.transaction(self.session_factory) as session:
                current = db_api.instance_lock(session, record.uuid)
                if current is None or current.task_state is not None:
                    return
                db_api.instance_set(
                    session, current, sync_reason=GUEST_POWERED_OFF, sync_message=message
                )
            self._post_event(current, GUEST_POWERED_OFF, message)
            self.projector.project(current.uuid, record=current)
            return
        operation = (
            operations.START if record.vm_state == states.STOPPED else operations.REBOOT_HARD
        )
        request_id = envelope.new_request_id()
        message = f"the guest {how}; spec.runStrategy Always starts it again"
        with db_engine.transaction(self.session_factory) as session:
            current = db_api.instance_lock(session, record.uuid)
            if current is None or operation.refusal(current.vm_state, current.task_state):
                return
            if current.host is None:
                return
            db_api.instance_set(
                session,
                current,
                task_state=operation.task_state,
                sync_reason=None,
                sync_message=None,
            )
            action = db_api.action_start(
                session, current.uuid, operation.name, request_id, message, instance=current
            )
            view = ActionView.from_rows(current, action, [])
        LOG.warning("instance %s: %s", record.uuid, message)
        self._post_event(current, "Restarting", message, type_="Normal")
        self._cast(current.uuid, _Cast(operation, current.host, request_id))
        self.history.record(view)
        self.projector.project(current.uuid, record=current)

    # -- operations that lost their way -------------------------------------------------

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
            busy = db_api.instances_in_task_states(session, operations.BY_TASK_STATE)
            stale = []
            for record in busy:
                action = db_api.action_latest_unfinished(session, record.uuid)
                started = action.start_time if action is not None else record.updated_at
                if started is not None and now - started > limit:
                    request_id = action.request_id if action else envelope.new_request_id()
                    stale.append((record, request_id, now - started > 2 * limit))
        for record, request_id, give_up in stale:
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
                self._cast(record.uuid, _Cast(operation, record.host, request_id))

    def recast_all(self) -> None:
        """Cast every operation under way once more (at start-up: this process may be the
        one that died between swapping a task state in and casting it)."""
        with db_engine.transaction(self.session_factory) as session:
            busy = [
                (record, db_api.action_latest_unfinished(session, record.uuid))
                for record in db_api.instances_in_task_states(session, operations.BY_TASK_STATE)
            ]
        for record, action in busy:
            if record.host is None or action is None:
                continue
            operation = operations.BY_TASK_STATE[record.task_state or ""]
            LOG.info(
                "instance %s: %s under way at start-up; cast again", record.uuid, operation.name
            )
            self._cast(record.uuid, _Cast(operation, record.host, action.request_id))

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
                session, current, task_state=None, sync_reason=FAILED, sync_message=message
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
            db_api.action_finish(session, current.uuid, request_id, message=_short(message))
            view = ActionView.from_rows(current, action, db_api.action_events(session, action.id))
        LOG.warning("instance %s: %s", current.uuid, message)
        self._recast.pop(current.uuid, None)
        self._post_event(current, FAILED, message)
        self.history.record(view)
        self.projector.project(current.uuid, record=current)

    # -- helpers ------------------------------------------------------------------------

    def _post_event(
        self, record: models.Instance, reason: str, message: str, *, type_: str = "Warning"
    ) -> None:
        self.kube.post_event(
            {
                "apiVersion": "compute.kubenova.io/v1alpha1",
                "kind": "Instance",
                "metadata": {
                    "name": record.name,
                    "namespace": record.namespace,
                    "uid": record.uuid,
                },
            },
            reason=reason,
            message=message,
            type_=type_,
        )


def _wanted(
    spec: Mapping[str, Any], record: models.Instance
) -> tuple[operations.Operation | None, str | None]:
    """The operation the spec asks of ``record`` (a power state first, then a new reboot
    request) and the reboot stamp it acts on, if any."""
    operation = operations.for_power_state(str(spec.get("powerState", "Running")), record.vm_state)
    if operation is not None:
        return operation, None
    reboot = spec.get("reboot") or {}
    stamp = reboot.get("requestedAt")
    if stamp and stamp != record.last_reboot_request:
        return operations.reboot(reboot.get("type") == "Hard"), str(stamp)
    return None, None


def _short(message: str | None) -> str | None:
    """An action's message fits its column (the event keeps the whole text)."""
    return message[:255] if message else None
