"""The steps of a live migration this host is asked for (contract 1.5), and its aborts.

``pre_live_migration``, ``post_live_migration_at_destination`` and
``rollback_live_migration_at_destination`` run on the destination, ``live_migration`` and
``post_live_migration_at_source`` on the source (:mod:`kubenova_agent.virt.migration` says what
each driver call does). Each ends with one ``migration_step_finished``, as a resize's steps do
(:func:`kubenova_agent.resizes.run`); ``live_migration``'s carries libvirt's total time and
downtime.

While ``live_migration`` runs, its progress goes to the conductor every
:data:`PROGRESS_INTERVAL_S`, and ``live_migration_abort`` sets the migration's abort event. The
abort is handled out of the instance's turn (the consumer's ``out_of_turn``): the migration it
stops holds that turn. An abort that comes before its migration started is remembered, so the
migration is aborted as soon as it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from kubenova.rpc import conductor_rpcapi
from kubenova.rpc import migration_payloads as mp
from kubenova_agent import exceptions, operations
from kubenova_agent.resizes import Step
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.migration import (
    MigrationProgress,
    MigrationResult,
    MigrationTarget,
    ProgressCallback,
)

LOG = logging.getLogger(__name__)

#: Every compute method that is a step of a live migration.
METHODS = frozenset(
    {
        "pre_live_migration",
        "live_migration",
        "post_live_migration_at_destination",
        "post_live_migration_at_source",
        "rollback_live_migration_at_destination",
    }
)
ABORT = "live_migration_abort"
#: How often a live migration's progress is sent: often enough for a watcher to see it move,
#: rarely enough that a long migration costs the conductor little.
PROGRESS_INTERVAL_S = 2.0
#: Aborts remembered for migrations that had not started (a bounded memory).
_EARLY_ABORTS_KEPT = 256


class LiveMigrations:
    """Turns this host's live-migration messages into steps, and aborts them."""

    def __init__(self, host: str, conductor: conductor_rpcapi.ConductorAPI) -> None:
        self.host = host
        self.conductor = conductor
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._aborted_early: OrderedDict[str, None] = OrderedDict()

    def abort(self, args: dict[str, object]) -> bool:
        """Abort the migration ``args`` names; whether it was under way here."""
        request = mp.LiveMigrationAbort.model_validate(args)
        with self._lock:
            event = self._running.get(request.migration_uuid)
            if event is None:
                self._aborted_early[request.migration_uuid] = None
                while len(self._aborted_early) > _EARLY_ABORTS_KEPT:
                    self._aborted_early.popitem(last=False)
                return False
        event.set()
        return True

    def step(self, method: str, args: dict[str, object], request_id: str) -> Step:
        """The step a message asks for. Raises ``pydantic.ValidationError`` for malformed
        arguments, ``KeyError`` for a method that is none of :data:`METHODS`."""
        if method == "pre_live_migration":
            pre = mp.PreLiveMigration.model_validate(args)
            return Step(
                "pre_live_migration",
                pre.instance.uuid,
                pre.migration.uuid,
                lambda driver: driver.pre_live_migration(operations.instance_spec(pre.instance)),
            )
        if method == "live_migration":
            move = mp.LiveMigration.model_validate(args)
            return Step(
                "live_migration",
                move.instance_uuid,
                move.migration.uuid,
                lambda driver: self._migrate(driver, move, request_id),
            )
        if method == "post_live_migration_at_destination":
            post = mp.PostLiveMigrationAtDestination.model_validate(args)
            return Step(
                "post_live_migration_at_destination",
                post.instance.uuid,
                post.migration.uuid,
                lambda driver: driver.post_live_migration_at_destination(
                    operations.instance_spec(post.instance)
                ),
            )
        if method == "post_live_migration_at_source":
            source = mp.PostLiveMigrationAtSource.model_validate(args)
            return Step(
                "post_live_migration_at_source",
                source.instance_uuid,
                source.migration.uuid,
                lambda driver: driver.post_live_migration_at_source(source.instance_uuid),
            )
        if method == "rollback_live_migration_at_destination":
            back = mp.RollbackLiveMigrationAtDestination.model_validate(args)
            return Step(
                "rollback_live_migration_at_destination",
                back.instance_uuid,
                back.migration.uuid,
                lambda driver: driver.rollback_live_migration_at_destination(back.instance_uuid),
            )
        raise KeyError(method)

    def _migrate(
        self, driver: virt_driver.ComputeDriver, move: mp.LiveMigration, request_id: str
    ) -> MigrationResult:
        ref = move.migration
        if not ref.dest_uri:
            raise exceptions.MigrationFailed(
                move.instance_uuid,
                f"host {ref.dest_host} gives no migration URI: it cannot take instances",
            )
        abort = threading.Event()
        with self._lock:
            self._running[ref.uuid] = abort
            if ref.uuid in self._aborted_early:
                del self._aborted_early[ref.uuid]
                abort.set()
        try:
            return driver.live_migration(
                move.instance_uuid,
                MigrationTarget(ref.dest_host, ref.dest_uri),
                on_progress=self._progress_sender(move.instance_uuid, ref.uuid, request_id),
                progress_timeout_s=move.progress_timeout_s,
                abort=abort,
            )
        finally:
            with self._lock:
                self._running.pop(ref.uuid, None)

    def _progress_sender(
        self, instance_uuid: str, migration_uuid: str, request_id: str
    ) -> ProgressCallback:
        last_sent = [float("-inf")]

        def send(progress: MigrationProgress) -> None:
            now = time.monotonic()
            if now - last_sent[0] < PROGRESS_INTERVAL_S:
                return
            last_sent[0] = now
            # A progress report lost with the broker costs a figure, not the migration.
            try:
                self._send_progress(instance_uuid, migration_uuid, progress, request_id)
            except Exception:
                LOG.warning("could not send the progress of migration %s", migration_uuid)

        return send

    def _send_progress(
        self, instance_uuid: str, migration_uuid: str, progress: MigrationProgress, request_id: str
    ) -> None:
        self.conductor.migration_progress(
            mp.MigrationProgress(
                instance_uuid=instance_uuid,
                host=self.host,
                migration_uuid=migration_uuid,
                elapsed_s=max(0.0, progress.elapsed_s),
                data_total=max(0, progress.data_total),
                data_processed=max(0, progress.data_processed),
                data_remaining=max(0, progress.data_remaining),
            ),
            request_id,
        )
