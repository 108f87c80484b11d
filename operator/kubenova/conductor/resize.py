"""Resize through the conductor (Nova's resize, confirmResize and revertResize): a new flavor,
on the instance's host or another, that the user confirms or reverts.

The road, each step cast to one host and ended by its ``migration_step_finished``:

1. :meth:`Resizes.start` (task ``resize_prep``): the scheduler picks a destination for the new
   flavor (the instance's own host too, unless ``allow_resize_to_same_host`` is off) and the
   claim holds both: the migration takes over the source's allocations, the instance claims
   the destination (:func:`kubenova.db.moves.claim_move`).
2. ``resize_instance`` on the source (``resize_migrating``): the guest is powered off and its
   disk set aside, and copied to the destination when that is another host.
3. ``finish_resize`` on the destination (``resize_finish``): the guest is defined with the new
   flavor and started if it ran before. The record moves there: vm_state ``resized``, phase
   VerifyResize, migration ``finished``.
4. Confirm (``spec.confirmResize``, or the ``resize_confirm_window`` passing): ``confirm_resize``
   on the source drops what it kept, and the migration's claim on it is freed. Revert
   (``spec.flavor`` back to the old flavor): ``revert_resize`` on the destination removes the
   new guest, ``finish_revert_resize`` on the source brings the old one back, and the claims
   go back to what they were.

A cold migration (:mod:`kubenova.conductor.instance_migrations`) takes the same road with the
same flavor to another host, and is confirmed as soon as the guest runs there; deleting its
InstanceMigration before the guest moved undoes it as a revert does. A step that fails before
the guest moved leaves it where it was; a guest that cannot start on the destination is
brought back on the source, as a revert is. Each step's report is checked
against the task state and the migration (a duplicate or a stray report changes nothing).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from kubenova.compute import operations, states
from kubenova.conductor.action_history import ActionView
from kubenova.conductor.compute_tasks import instance_payload
from kubenova.conductor.resize_records import MoveRefused, ResizeRecords
from kubenova.conductor.resize_steps import Step, expected, power_values, with_flavor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.rpc import envelope
from kubenova.rpc import migration_payloads as mp

LOG = logging.getLogger(__name__)


class Resizes(ResizeRecords):
    """Starts, advances and ends resizes and cold migrations."""

    # -- from the spec (the task state is swapped in and the action started) ------------

    def start(
        self,
        record: models.Instance,
        flavor: Mapping[str, Any],
        spec: Mapping[str, Any],
        request_id: str,
        *,
        migration_type: str = moves.RESIZE,
        target_host: str | None = None,
        object_ref: tuple[str, str] | None = None,
    ) -> str:
        """Schedule and claim the new flavor (for a cold migration, the same flavor on
        another host: ``target_host``, or the scheduler's pick), then cast
        ``resize_instance`` to the source; the migration's uuid. When no host takes it, the
        operation is ended and :class:`MoveRefused` says why. ``object_ref``: the
        InstanceMigration's (name, uid) that asked for it."""
        what = f"resize to {flavor['name']}" if migration_type == moves.RESIZE else "migrate"
        migration_uuid, dest = self._claim(
            record,
            flavor,
            spec,
            request_id,
            migration_type=migration_type,
            target_host=target_host,
            object_ref=object_ref,
            refusal=f"cannot {what}",
        )
        with db_engine.transaction(self.session_factory) as session:
            current = db_api.instance_lock(session, record.uuid)
            migration = moves.migration_get(session, migration_uuid)
            if current is None or migration is None:
                raise MoveRefused("the instance was deleted")
            db_api.instance_set(session, current, task_state=states.RESIZE_MIGRATING)
            moves.migration_set_status(session, migration, moves.MIGRATING)
            ref = self._ref(session, migration)
        LOG.info("instance %s: %s to %s on %s", record.uuid, migration_type, flavor["name"], dest)
        self.compute.migration_step(
            ref.source_host,
            "resize_instance",
            mp.ResizeInstance(
                instance_uuid=record.uuid,
                migration=ref,
                shutdown_timeout_s=self.settings.shutdown_timeout_s,
            ),
            request_id,
        )
        # The statuses follow the cast, so the source starts at once.
        self.on_migration_changed(migration_uuid)
        self.projector.project(record.uuid, record=current, migration_type=migration_type)
        return migration_uuid

    def confirm(self, record: models.Instance, request_id: str) -> None:
        """Cast ``confirm_resize`` to the source (the task is ``resize_confirming``)."""
        ref = self._advance(record.uuid, moves.CONFIRMING)
        if ref is None:
            self._end_operation(
                record.uuid, request_id, "no resize awaits confirmation", failed=True
            )
            return
        args = mp.ConfirmResize(instance_uuid=record.uuid, migration=ref)
        self.compute.migration_step(ref.source_host, "confirm_resize", args, request_id)
        self.projector.project(record.uuid, record=record, migration_type=moves.RESIZE)

    def revert(self, record: models.Instance, request_id: str) -> None:
        """Cast ``revert_resize`` to the destination (the task is ``resize_reverting``)."""
        ref = self._advance(record.uuid, moves.REVERTING)
        if ref is None:
            self._end_operation(record.uuid, request_id, "no resize awaits a revert", failed=True)
            return
        args = mp.RevertResize(instance_uuid=record.uuid, migration=ref)
        self.compute.migration_step(ref.dest_host, "revert_resize", args, request_id)
        self.projector.project(record.uuid, record=record, migration_type=moves.RESIZE)

    # -- from the hosts -----------------------------------------------------------------

    def step_finished(self, report: mp.MigrationStepFinished, request_id: str) -> None:
        """Record a step's event and go on: the next step, or the end of the operation."""
        step = self._step_of(report, request_id, expected)
        if step is None:
            return
        {
            "resize_instance": self._resize_instance_done,
            "finish_resize": self._finish_resize_done,
            "confirm_resize": self._confirm_resize_done,
            "revert_resize": self._revert_resize_done,
            "finish_revert_resize": self._finish_revert_resize_done,
        }[report.step](step)
        self.on_migration_changed(step.migration_uuid)

    def _resize_instance_done(self, step: Step) -> None:
        if not step.ok:
            moves.revert_move(self.session_factory, step.migration_uuid, moves.ERROR, step.why)
            self._end(step, step.why, values=power_values(step.report))
            return
        if step.cancelled:
            # Deleted before the guest moved: the copy goes, the guest comes back.
            why = "cancelled: its InstanceMigration was deleted"
            self._set(step, states.RESIZE_REVERTING, moves.REVERTING, why)
            args_back = mp.RevertResize(instance_uuid=step.record.uuid, migration=step.ref)
            self.compute.migration_step(
                step.ref.dest_host, "revert_resize", args_back, step.request_id
            )
            return
        self._set(step, states.RESIZE_FINISH, moves.POST_MIGRATING)
        payload = with_flavor(instance_payload(step.record), step.new_flavor)
        args = mp.FinishResize(instance=payload, migration=step.ref, power_on=step.power_on)
        self.compute.migration_step(step.ref.dest_host, "finish_resize", args, step.request_id)

    def _finish_resize_done(self, step: Step) -> None:
        if not step.ok:
            # Bring the guest back where it was, as a revert does; the action says why.
            self._set(step, states.RESIZE_REVERTING, moves.REVERTING, step.why)
            args = mp.RevertResize(instance_uuid=step.record.uuid, migration=step.ref)
            self.compute.migration_step(step.ref.dest_host, "revert_resize", args, step.request_id)
            return
        if step.migration_type != moves.RESIZE:
            self._moved_confirm(step)
            return
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_get(session, step.migration_uuid)
            if migration is not None:
                moves.migration_set_status(session, migration, moves.FINISHED)
                migration.finished_at = models.utcnow()
        self._end(
            step,
            None,
            values={
                "host": step.report.host,
                "node": step.dest_node or step.report.host,
                "flavor": step.new_flavor,
                "vm_state": states.RESIZED,
                "power_state": step.report.power_state,
                "addresses": list(step.report.addresses),
            },
        )

    def _moved_confirm(self, step: Step) -> None:
        """A cold migration needs no verification: the instance is recorded on its new host
        and the source is told to drop its copy at once."""
        running = step.report.power_state == states.RUNNING
        with db_engine.transaction(self.session_factory) as session:
            current = db_api.instance_lock(session, step.record.uuid)
            migration = moves.migration_get(session, step.migration_uuid)
            if current is None or migration is None:
                return
            db_api.instance_set(
                session,
                current,
                host=step.report.host,
                node=step.dest_node or step.report.host,
                vm_state=states.ACTIVE if running else states.STOPPED,
                task_state=states.RESIZE_CONFIRMING,
                power_state=step.report.power_state,
                addresses=list(step.report.addresses),
            )
            moves.migration_set_status(session, migration, moves.CONFIRMING)
            migration.finished_at = models.utcnow()
        self.on_migration_changed(step.migration_uuid)
        self.projector.project(current.uuid, record=current, migration_type=step.migration_type)
        args = mp.ConfirmResize(instance_uuid=step.record.uuid, migration=step.ref)
        self.compute.migration_step(step.ref.source_host, "confirm_resize", args, step.request_id)

    def _confirm_resize_done(self, step: Step) -> None:
        # The guest runs on the destination either way: the source's claim goes. What a
        # failed clean-up left on the source, the action and the condition say.
        moves.confirm_move(self.session_factory, step.migration_uuid)
        running = step.record.power_state == states.RUNNING
        values = {"vm_state": states.ACTIVE if running else states.STOPPED}
        self._end(step, None if step.ok else step.why, values=values)

    def _revert_resize_done(self, step: Step) -> None:
        if not step.ok:
            moves.revert_move(self.session_factory, step.migration_uuid, moves.ERROR, step.why)
            values = {
                "vm_state": states.ERROR,
                "host": step.ref.source_host,
                "node": step.source_node,
                "flavor": step.old_flavor,
            }
            self._end(step, step.why, values=values)
            return
        payload = with_flavor(instance_payload(step.record), step.old_flavor)
        args = mp.FinishRevertResize(instance=payload, migration=step.ref, power_on=step.power_on)
        self.compute.migration_step(
            step.ref.source_host, "finish_revert_resize", args, step.request_id
        )

    def _finish_revert_resize_done(self, step: Step) -> None:
        status = moves.REVERTED if step.ok and step.failure is None else moves.ERROR
        if step.ok and step.cancelled:
            status = "cancelled"
        moves.revert_move(
            self.session_factory, step.migration_uuid, status, None if step.ok else step.why
        )
        values: dict[str, Any] = {
            "host": step.ref.source_host,
            "node": step.source_node,
            "flavor": step.old_flavor,
            **power_values(step.report),
        }
        if not step.ok:
            values["vm_state"] = states.ERROR
        message = step.failure or (None if step.ok else step.why)
        self._end(step, message, values=values, failed=message is not None)

    # -- steps that lost their way ------------------------------------------------------

    def recast(self, record: models.Instance, request_id: str) -> None:
        """Cast the step under way once more (an operator that died before casting it, a
        host that never answered); the hosts' steps are idempotent. A resize interrupted
        before its destination was claimed is ended: it is asked for again."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_in_progress(session, record.uuid)
            ref = self._ref(session, migration) if migration is not None else None
            new_flavor = dict(migration.new_flavor) if migration is not None else {}
            power_on = bool(migration.power_on) if migration is not None else True
        task = record.task_state
        if ref is None:
            self._end_operation(
                record.uuid,
                request_id,
                "resize interrupted before a destination was claimed; ask for it again",
                failed=True,
            )
            return
        LOG.warning("instance %s: %s under way; cast again", record.uuid, task)
        if task in (states.RESIZE_PREP, states.RESIZE_MIGRATING):
            args: Any = mp.ResizeInstance(
                instance_uuid=record.uuid,
                migration=ref,
                shutdown_timeout_s=self.settings.shutdown_timeout_s,
            )
            self.compute.migration_step(ref.source_host, "resize_instance", args, request_id)
        elif task == states.RESIZE_FINISH:
            payload = with_flavor(instance_payload(record), new_flavor)
            args = mp.FinishResize(instance=payload, migration=ref, power_on=power_on)
            self.compute.migration_step(ref.dest_host, "finish_resize", args, request_id)
        elif task == states.RESIZE_CONFIRMING:
            args = mp.ConfirmResize(instance_uuid=record.uuid, migration=ref)
            self.compute.migration_step(ref.source_host, "confirm_resize", args, request_id)
        elif task == states.RESIZE_REVERTING:
            args = mp.RevertResize(instance_uuid=record.uuid, migration=ref)
            self.compute.migration_step(ref.dest_host, "revert_resize", args, request_id)

    # -- the confirmation window --------------------------------------------------------

    def confirm_due(self) -> int:
        """Confirm the resizes that waited longer than ``resize_confirm_window``; how many."""
        window = self.settings.resize_confirm_window_s
        if window <= 0:
            return 0
        cutoff = models.utcnow() - datetime.timedelta(seconds=window)
        with db_engine.transaction(self.session_factory) as session:
            due = [m.instance_uuid for m in moves.migrations_to_confirm(session, cutoff)]
        confirmed = 0
        message = f"confirmed by Kubenova: not confirmed or reverted within {window} s"
        for instance_uuid in due:
            request_id = envelope.new_request_id()
            with db_engine.transaction(self.session_factory) as session:
                record = db_api.instance_lock(session, instance_uuid)
                op = operations.CONFIRM_RESIZE
                if record is None or op.refusal(record.vm_state, record.task_state):
                    continue
                db_api.instance_set(session, record, task_state=op.task_state)
                action = db_api.action_start(
                    session, instance_uuid, op.name, request_id, message, instance=record
                )
                view = ActionView.from_rows(record, action, [])
            LOG.info("instance %s: %s", instance_uuid, message)
            self.history.record(view)
            self.confirm(record, request_id)
            confirmed += 1
        return confirmed
