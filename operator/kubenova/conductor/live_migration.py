"""Live migration through the conductor (Nova's live-migrate): the running guest moves to
another host, its memory and disk copied while it runs.

The road, each step cast to one host and ended by its ``migration_step_finished``; the
instance's task state is ``migrating`` throughout and the migration's status says which step
is under way:

1. :meth:`LiveMigrations.start`: the scheduler picks a destination (or checks the one asked
   for) and the claim holds both hosts, as a cold migration's does
   (:func:`kubenova.db.moves.claim_move`). Status ``pre-migrating``.
2. ``pre_live_migration`` on the destination makes ready: an empty disk, the config drive.
3. ``live_migration`` on the source (status ``migrating``) moves the guest. Its progress comes
   every few seconds (``migration_progress``) and goes to the InstanceMigration's status. The
   source's agent aborts it when the data left has not gone down for
   ``live_migration_progress_timeout_s``, or when asked (:meth:`LiveMigrations.abort`, the
   InstanceMigration deleted). Its report carries libvirt's total time and downtime.
4. Moved: the record is the destination's, and both post steps are cast at once (status
   ``post-migrating``): ``post_live_migration_at_destination`` checks the guest there and
   reports its power and addresses, ``post_live_migration_at_source`` removes what is left on
   the source. Neither needs the other (Nova's source cleans up before it tells the
   destination, too), and a user waits for one hop instead of two. The first report sets
   ``confirming`` (the source's awaited) or ``source-cleaned`` (the destination's awaited); the
   second frees the source's claim and ends the move (``confirmed``).
5. Not moved (a failure, an abort, no progress): ``rollback_live_migration_at_destination``
   (``reverting``) removes what the destination prepared; the destination's claim is freed and
   the guest runs on at the source (``failed``, or ``cancelled`` when the user asked).

A rollback that finds the guest running on the destination means the guest moved after all (a
source whose agent restarted during the move, say): the move then completes from step 4. Each
report is checked against the migration's status and the host that runs the step, so a
duplicate or stray report changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import orm

from kubenova.compute import states
from kubenova.conductor import live_migration_steps as steps
from kubenova.conductor.compute_tasks import instance_payload
from kubenova.conductor.resize_records import MoveRefused, ResizeRecords
from kubenova.conductor.resize_steps import Step
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.rpc import migration_payloads as mp
from kubenova.rpc.payload_base import Payload

#: What a step does once its changes are committed: cast the next step, tell the status.
Then = Callable[[], None]

LOG = logging.getLogger(__name__)

FAILED = "failed"
CANCELLED = "cancelled"


class LiveMigrations(ResizeRecords):
    """Starts, advances, aborts and ends live migrations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Told a migration's extra status (its progress, libvirt's figures) to show on its
        #: InstanceMigration: (migration uuid, status fields).
        self.on_migration_status: Callable[[str, dict[str, Any]], None] = lambda _u, _s: None
        # When each migration's progress was last heard (monotonic): a migration that still
        # reports is not cast again by the stale sweep.
        self._heard: dict[str, float] = {}
        self._heard_lock = threading.Lock()

    # -- from the InstanceMigration --------------------------------------------------------

    def start(
        self,
        record: models.Instance,
        flavor: Mapping[str, Any],
        spec: Mapping[str, Any],
        request_id: str,
        *,
        migration_type: str = moves.LIVE,
        target_host: str | None = None,
        object_ref: tuple[str, str] | None = None,
    ) -> str:
        """Schedule and claim a destination, then cast ``pre_live_migration`` to it; the
        migration's uuid. Raises :class:`MoveRefused` (the operation ended) when no host
        takes it."""
        migration_uuid, dest = self._claim(
            record,
            flavor,
            spec,
            request_id,
            migration_type=migration_type,
            target_host=target_host,
            object_ref=object_ref,
            refusal="cannot live-migrate",
        )
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_get(session, migration_uuid)
            if migration is None:
                raise MoveRefused("the instance was deleted")
            ref = self._ref(session, migration)
        LOG.info("instance %s: live migration to %s", record.uuid, dest)
        args = mp.PreLiveMigration(instance=instance_payload(record), migration=ref)
        # The destination starts preparing while the status is written.
        self.compute.migration_step(dest, "pre_live_migration", args, request_id)
        self.on_migration_changed(migration_uuid)
        return migration_uuid

    def abort(self, migration_uuid: str) -> bool:
        """Abort the migration (its InstanceMigration was deleted) unless the guest has
        moved already; whether it will be aborted."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_get(session, migration_uuid)
            if migration is None or migration.status not in (moves.PRE_MIGRATING, moves.MIGRATING):
                return False
            migration.cancel_requested = True
            instance_uuid, source = migration.instance_uuid, migration.source_compute
            under_way = migration.status == moves.MIGRATING
            request_id = migration.request_id
        if under_way:
            # Before the move started, the pre step's report sees cancel_requested instead.
            args = mp.LiveMigrationAbort(instance_uuid=instance_uuid, migration_uuid=migration_uuid)
            self.compute.migration_step(
                source, "live_migration_abort", args, request_id or migration_uuid
            )
        LOG.info("live migration %s: aborting; the instance stays on %s", migration_uuid, source)
        return True

    # -- from the hosts --------------------------------------------------------------------

    def progress(self, report: mp.MigrationProgress) -> None:
        """Show a migration's progress on its InstanceMigration (nothing is written to the
        database: a lost figure is followed by the next)."""
        with self._heard_lock:
            self._heard[report.migration_uuid] = time.monotonic()
        self.on_migration_status(report.migration_uuid, {"progress": steps.progress_status(report)})

    def step_finished(self, report: mp.MigrationStepFinished, request_id: str) -> None:
        """Record a step's event and go on: the next step, or the end of the operation.

        The event, the check that the report is the step awaited and the step's own changes
        are one transaction; the next step is cast as soon as it commits, and what a user
        waits for (the migration's status) is told before the rest."""
        found = self._on_step(report, request_id, steps.expected, steps.details, self._changes)
        if found is not None:
            _step, then = found
            then()

    def _changes(self, session: orm.Session, step: Step, migration: models.Migration) -> Then:
        """The step's changes to the records; what to do once they are committed."""
        return {
            "pre_live_migration": self._prepared,
            "live_migration": self._moved,
            "post_live_migration_at_destination": self._kept,
            "post_live_migration_at_source": self._cleaned,
            "rollback_live_migration_at_destination": self._rolled_back,
        }[step.report.step](session, step, migration)

    def _prepared(self, session: orm.Session, step: Step, migration: models.Migration) -> Then:
        if not step.ok or step.cancelled:
            why = step.why if not step.ok else "cancelled: its InstanceMigration was deleted"
            return self._roll_back(session, step, migration, why)
        # The task state is ``migrating`` already (the report was awaited under it).
        moves.migration_set_status(session, migration, moves.MIGRATING)
        args = mp.LiveMigration(
            instance_uuid=step.record.uuid,
            migration=step.ref,
            progress_timeout_s=self.settings.live_migration_progress_timeout_s,
        )
        return self._cast_then(step, step.ref.source_host, "live_migration", args)

    def _moved(self, session: orm.Session, step: Step, migration: models.Migration) -> Then:
        if not step.ok:
            return self._roll_back(session, step, migration, step.why)
        cast = self._to_destination(session, step, migration)
        # libvirt's figures go to the status once the next step is on its way: the guest
        # already runs on the destination, and a user waits for what follows, not for this.
        figures = {"totalSeconds": step.report.total_s}
        if step.report.downtime_ms is not None:
            figures["downtimeMilliseconds"] = step.report.downtime_ms

        def then() -> None:
            cast()
            self.on_migration_status(step.migration_uuid, figures)

        return then

    def _to_destination(
        self, session: orm.Session, step: Step, migration: models.Migration
    ) -> Then:
        """The guest runs on the destination: the record is that host's from now on."""
        dest = step.ref.dest_host
        db_api.instance_update_unread(
            session, step.record.uuid, host=dest, node=step.dest_node or dest
        )
        moves.migration_set_status(session, migration, moves.POST_MIGRATING)
        at_destination = mp.PostLiveMigrationAtDestination(
            instance=instance_payload(step.record), migration=step.ref
        )
        at_source = mp.PostLiveMigrationAtSource(instance_uuid=step.record.uuid, migration=step.ref)

        def then() -> None:
            with self._heard_lock:
                self._heard.pop(step.migration_uuid, None)
            self.compute.migration_step(
                dest, "post_live_migration_at_destination", at_destination, step.request_id
            )
            self.compute.migration_step(
                step.ref.source_host, "post_live_migration_at_source", at_source, step.request_id
            )
            self.on_migration_changed(step.migration_uuid)
            self.projector.project(step.record.uuid)

        return then

    def _kept(self, session: orm.Session, step: Step, migration: models.Migration) -> Then:
        # The guest runs on the destination either way; a failure here is told in the end.
        db_api.instance_update_unread(
            session,
            step.record.uuid,
            power_state=step.report.power_state,
            addresses=list(step.report.addresses),
        )
        return self._post_step_in(session, step, migration, awaiting=moves.CONFIRMING)

    def _cleaned(self, session: orm.Session, step: Step, migration: models.Migration) -> Then:
        return self._post_step_in(session, step, migration, awaiting=moves.SOURCE_CLEANED)

    def _post_step_in(
        self, session: orm.Session, step: Step, migration: models.Migration, *, awaiting: str
    ) -> Then:
        """One of the two post steps is in: wait for the other (status ``awaiting``), or end
        the move when it is the second."""
        if migration.status == moves.POST_MIGRATING:
            moves.migration_set_status(session, migration, awaiting, None if step.ok else step.why)
            return lambda: self.on_migration_changed(step.migration_uuid)
        failures = [why for why in (step.failure, None if step.ok else step.why) if why]
        message = "; ".join(failures) or None
        moves.migration_set_status(session, migration, migration.status, message)
        moves.confirm_locked(session, step.record, migration)
        # A step that failed after the guest moved leaves it running where it went: the
        # action says what was left behind, but the move itself succeeded.
        ending = self._end_locked(session, step.record, step.request_id, message, failed=False)

        def then() -> None:
            self.on_migration_changed(step.migration_uuid)
            self._ended(ending)
            if message is not None:
                LOG.warning("instance %s: live migration ended: %s", step.record.uuid, message)

        return then

    def _roll_back(
        self, session: orm.Session, step: Step, migration: models.Migration, why: str
    ) -> Then:
        moves.migration_set_status(session, migration, moves.REVERTING, why)
        args = mp.RollbackLiveMigrationAtDestination(
            instance_uuid=step.record.uuid, migration=step.ref
        )
        return self._cast_then(
            step, step.ref.dest_host, "rollback_live_migration_at_destination", args
        )

    def _rolled_back(self, session: orm.Session, step: Step, migration: models.Migration) -> Then:
        if not step.ok and step.report.power_state == states.RUNNING:
            # The destination runs the guest: it moved after all.
            LOG.warning("instance %s: the guest runs on %s after all", step.record.uuid,
                        step.report.host)  # fmt: skip
            return self._to_destination(session, step, migration)
        status = CANCELLED if step.cancelled else FAILED
        message = step.failure or "live migration failed"
        if not step.ok:
            message = f"{message}; then {step.why}"
            status = moves.ERROR
        moves.revert_locked(session, step.record, migration, status, message)
        ending = self._end_locked(session, step.record, step.request_id, message, failed=True)

        def then() -> None:
            with self._heard_lock:
                self._heard.pop(step.migration_uuid, None)
            self.on_migration_changed(step.migration_uuid)
            self._ended(ending)

        return then

    def _cast_then(self, step: Step, host: str, method: str, args: Payload) -> Then:
        """Cast ``method`` to ``host``, then show the migration's new status."""

        def then() -> None:
            self.compute.migration_step(host, method, args, step.request_id)
            self.on_migration_changed(step.migration_uuid)

        return then

    # -- steps that lost their way ---------------------------------------------------------

    def recast(self, record: models.Instance, request_id: str) -> None:
        """Cast the step under way once more, once per step and process (the hosts' steps
        are idempotent, and a ``live_migration`` cast again to a source the guest has left
        ends in a rollback that finds it on the destination). A migration that still reports
        progress is left alone; one interrupted before its destination was claimed is
        ended."""
        with db_engine.transaction(self.session_factory) as session:
            migration = moves.migration_in_progress(session, record.uuid)
            ref = self._ref(session, migration) if migration is not None else None
            status = migration.status if migration is not None else None
        if ref is None or status is None:
            self._end_operation(
                record.uuid,
                request_id,
                "live migration interrupted before a destination was claimed; ask for it again",
                failed=True,
            )
            return
        with self._heard_lock:
            heard = self._heard.get(ref.uuid)
        limit = self.settings.operation_timeout_s
        if status == moves.MIGRATING and heard is not None and time.monotonic() - heard < limit:
            return
        if not self._first_recast(ref.uuid, status):
            return
        LOG.warning("instance %s: live migration step (%s) cast again", record.uuid, status)
        payload = instance_payload(record)
        uuid = record.uuid
        casts: dict[str, tuple[str, str, Payload]] = {
            moves.PRE_MIGRATING: (
                ref.dest_host, "pre_live_migration",
                mp.PreLiveMigration(instance=payload, migration=ref),
            ),
            moves.MIGRATING: (
                ref.source_host, "live_migration",
                mp.LiveMigration(
                    instance_uuid=uuid, migration=ref,
                    progress_timeout_s=self.settings.live_migration_progress_timeout_s,
                ),
            ),
            moves.SOURCE_CLEANED: (
                ref.dest_host, "post_live_migration_at_destination",
                mp.PostLiveMigrationAtDestination(instance=payload, migration=ref),
            ),
            moves.CONFIRMING: (
                ref.source_host, "post_live_migration_at_source",
                mp.PostLiveMigrationAtSource(instance_uuid=uuid, migration=ref),
            ),
            moves.REVERTING: (
                ref.dest_host, "rollback_live_migration_at_destination",
                mp.RollbackLiveMigrationAtDestination(instance_uuid=uuid, migration=ref),
            ),
        }  # fmt: skip
        if status == moves.POST_MIGRATING:
            # Both post steps are awaited: cast both.
            for waiting in (moves.SOURCE_CLEANED, moves.CONFIRMING):
                host, method, args = casts[waiting]
                self.compute.migration_step(host, method, args, request_id)
        elif status in casts:
            host, method, args = casts[status]
            self.compute.migration_step(host, method, args, request_id)
