"""Day-2 power operations through the conductor: the spec's powerState and reboot request
become one operation at a time, checked against the table of allowed states
(:mod:`kubenova.compute.operations`), its task state swapped in under a row lock (Nova's
``expected_task_state``), recorded as an instance action, cast to the instance's host, and
finished when the host reports back.

The spec is applied by generation: an Instance whose ``metadata.generation`` is newer than
its record's is reconciled, one operation at a time (a new image first, then the power state,
then a reboot request). The record's generation (``status.observedGeneration``) moves once the
whole spec is applied, or when an operation it asks for is refused or fails (then nothing is
tried again until the spec changes). A spec that changes while an operation runs waits for
it: the status written when it ends brings the object back to the api layer, which reconciles
it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kubenova.compute import operations, states
from kubenova.conductor import console_ports, spec_change
from kubenova.conductor.action_history import ActionHistory, ActionView
from kubenova.conductor.compute_tasks import instance_payload
from kubenova.conductor.instance_events import post_instance_event
from kubenova.conductor.projector import InstanceProjector
from kubenova.conductor.resize import Resizes
from kubenova.conductor.resize_records import MoveRefused
from kubenova.conductor.spec_change import SpecChange
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.exception import PermanentFailure
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, envelope, payloads

LOG = logging.getLogger(__name__)

REFUSED = "InvalidState"
FAILED = "OperationFailed"
GUEST_POWERED_OFF = "GuestPoweredOff"

_SYNC_MESSAGE_MAX = 1024


@dataclasses.dataclass(frozen=True)
class Cast:
    """An operation accepted: what to cast, to whom, for which request."""

    operation: operations.Operation
    host: str
    request_id: str
    #: A rebuild: whether the instance is started afterwards.
    power_on: bool = True


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
        resizes: Resizes,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.kube = kube
        self.compute = compute
        self.projector = projector
        self.history = history
        self.resizes = resizes
        #: Told when an operation ends (the stale-operation sweep's memory).
        self.on_finished: Callable[[str], None] = lambda _uuid: None

    # -- from the spec ------------------------------------------------------------------

    def reconcile(self, change: SpecChange) -> None:
        """Apply ``change.spec`` if its generation is new: start the next operation it asks
        for, refuse it, or record the spec applied. An instance that is being built,
        deleted or operated on is left alone: the end of that task reconciles it again."""
        refusal: tuple[str, str] | None = None
        accepted: Cast | None = None
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, change.uid)
            if record is None or record.generation >= change.generation:
                return
            if record.vm_state in (states.BUILDING, states.DELETED) or record.task_state:
                return
            resized_from = None
            if record.vm_state == states.RESIZED:
                migration = moves.migration_in_progress(session, record.uuid)
                resized_from = migration.old_flavor.get("name") if migration else None
            wanted = spec_change.wanted(change, record, resized_from)
            # One-shot requests are acted on once, even if refused.
            values: dict[str, Any] = dict(wanted.stamps)
            if wanted.operation is None and wanted.refusal is None:
                values.update(generation=change.generation, sync_reason=None, sync_message=None)
                db_api.instance_set(session, record, **values)
            else:
                refusal = wanted.refusal
                if refusal is None:
                    assert wanted.operation is not None
                    why = wanted.operation.refusal(record.vm_state, record.task_state)
                    why = why or self._host_refusal(session, wanted.operation, record)
                    refusal = (REFUSED, why) if why else None
                if refusal is not None:
                    values.update(
                        generation=change.generation,
                        sync_reason=refusal[0],
                        sync_message=refusal[1][:_SYNC_MESSAGE_MAX],
                    )
                    db_api.instance_set(session, record, **values)
                else:
                    operation = wanted.operation
                    assert operation is not None
                    assert record.host is not None
                    values.update(
                        task_state=operation.task_state,
                        task_generation=change.generation,
                        sync_reason=None,
                        sync_message=None,
                        **wanted.record_values,
                    )
                    # Whether a rebuilt instance is started: it keeps its power state.
                    power_on = record.vm_state != states.STOPPED
                    db_api.instance_set(session, record, **values)
                    action = db_api.action_start(
                        session, change.uid, operation.name, change.request_id, instance=record
                    )
                    accepted = Cast(operation, record.host, change.request_id, power_on)
                    view = ActionView.from_rows(record, action, [])
        if refusal is not None:
            LOG.warning("instance %s: %s", change.uid, refusal[1])
            self.post_event(record, refusal[0], refusal[1])
        if accepted is not None:
            # Recorded before the cast: a quick operation's end may be reported, and its
            # final view recorded, before this thread gets further.
            self.history.record(view)
            if accepted.operation is operations.RESIZE:
                assert wanted.flavor is not None
                with contextlib.suppress(MoveRefused):  # ended, and said why
                    self.resizes.start(record, wanted.flavor, change.spec, change.request_id)
                return
            if accepted.operation is operations.CONFIRM_RESIZE:
                self.resizes.confirm(record, change.request_id)
                return
            if accepted.operation is operations.REVERT_RESIZE:
                self.resizes.revert(record, change.request_id)
                return
            self.cast(record, accepted)
        self.projector.project(record.uuid, record=record)

    def _host_refusal(
        self, session: Any, operation: operations.Operation, record: models.Instance
    ) -> str | None:
        if record.host is None:
            return f"cannot {operation.name}: the instance is placed on no host"
        if not db_api.host_is_up(session, record.host, self.settings.service_down_time_s):
            return f"cannot {operation.name}: its host {record.host} is down"
        return None

    def cast(self, record: models.Instance, cast: Cast) -> None:
        operation = cast.operation
        timeout = self.settings.shutdown_timeout_s
        if operation is operations.STOP:
            self.compute.stop_instance(
                cast.host,
                record.uuid,
                cast.request_id,
                clean_shutdown=True,
                shutdown_timeout_s=timeout,
            )
        elif operation in (operations.REBOOT_SOFT, operations.REBOOT_HARD):
            self.compute.reboot_instance(
                cast.host,
                record.uuid,
                cast.request_id,
                reboot_type="HARD" if operation is operations.REBOOT_HARD else "SOFT",
                shutdown_timeout_s=timeout,
            )
        elif operation is operations.REBUILD:
            self.compute.rebuild_instance(
                cast.host, instance_payload(record), cast.request_id, power_on=cast.power_on
            )
        else:
            self.compute.instance_operation(
                cast.host, f"{operation.name}_instance", record.uuid, cast.request_id
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
                "task_generation": None,
                "power_state": report.power_state,
                "addresses": list(report.addresses),
                **console_ports.values(report),
                "sync_reason": FAILED if failed else None,
                "sync_message": (
                    f"{operation.name} failed on host {report.host}: {report.message}"[
                        :_SYNC_MESSAGE_MAX
                    ]
                    if failed
                    else None
                ),
            }
            if operation is operations.REBUILD and not failed:
                # A new disk booted: the instance was launched again (Nova's rebuild sets it).
                values["launched_at"] = report.finished_at
            if failed and record.task_generation is not None:
                # Observed: a spec whose operation failed is not tried again until it changes.
                values["generation"] = max(record.generation, record.task_generation)
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
                session, report.instance_uuid, request_id, message=short(report.message)
            )
            view = ActionView.from_rows(record, action, db_api.action_events(session, action.id))
        self.on_finished(report.instance_uuid)
        if failed:
            self.post_event(record, FAILED, values["sync_message"])
        self.projector.project(record.uuid, record=record, host_up=True)
        # A spec changed meanwhile is applied next: this status patch's watch event brings
        # the object back to the api layer, whose generation check reconciles it.
        self.history.record(view)

    def guest_stopped(self, record: models.Instance) -> None:
        """The guest powered itself off (or crashed) with no operation under way. Under
        runStrategy Always, with a spec that wants it Running, start it again (a hard reboot
        for a crashed one); under Manual, say so in the Synced condition."""
        instance = self.kube.get_instance(record.namespace, record.name)
        if instance is None or (instance.get("metadata") or {}).get("deletionTimestamp"):
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
            self.post_event(current, GUEST_POWERED_OFF, message)
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
        self.post_event(current, "Restarting", message, type_="Normal")
        self.history.record(view)  # before the cast, as in reconcile
        self.cast(current, Cast(operation, current.host, request_id))
        self.projector.project(current.uuid, record=current)

    # -- operations that lost their way -------------------------------------------------

    def post_event(
        self, record: models.Instance, reason: str, message: str, *, type_: str = "Warning"
    ) -> None:
        post_instance_event(self.kube, record, reason, message, type_=type_)


def short(message: str | None) -> str | None:
    """An action's message fits its column (the event keeps the whole text)."""
    return message[:255] if message else None
