"""The steps of a live migration as the conductor sees them: which report each status awaits,
from which host, and what a report says for the InstanceMigration's status and the action's
events. The road itself is :mod:`kubenova.conductor.live_migration`."""

from __future__ import annotations

from typing import Any

from kubenova.compute import states
from kubenova.db import models, moves
from kubenova.rpc import migration_payloads as mp

#: Step -> (the migration statuses it is awaited under, whether the source runs it). The two
#: post steps run at once; the status says which of them is still awaited.
_STEPS: dict[str, tuple[frozenset[str], bool]] = {
    "pre_live_migration": (frozenset({moves.PRE_MIGRATING}), False),
    "live_migration": (frozenset({moves.MIGRATING}), True),
    "post_live_migration_at_destination": (
        frozenset({moves.POST_MIGRATING, moves.SOURCE_CLEANED}),
        False,
    ),
    "post_live_migration_at_source": (frozenset({moves.POST_MIGRATING, moves.CONFIRMING}), True),
    "rollback_live_migration_at_destination": (frozenset({moves.REVERTING}), False),
}
STEPS = frozenset(_STEPS)


def expected(
    record: models.Instance, migration: models.Migration, report: mp.MigrationStepFinished
) -> bool:
    """Whether ``report`` is the step the live migration waits for, from its host."""
    if migration.instance_uuid != record.uuid or migration.migration_type != moves.LIVE:
        return False
    statuses, on_source = _STEPS[report.step]
    host = migration.source_compute if on_source else migration.dest_compute
    return (
        record.task_state == states.MIGRATING
        and migration.status in statuses
        and report.host == host
    )


def progress_status(progress: mp.MigrationProgress) -> dict[str, Any]:
    """The InstanceMigration's ``status.progress`` for a progress report."""
    total = progress.data_total
    percent = 0 if total <= 0 else round(100 * progress.data_processed / total)
    return {
        "elapsedSeconds": round(progress.elapsed_s, 1),
        "dataTotalBytes": total,
        "dataProcessedBytes": progress.data_processed,
        "dataRemainingBytes": progress.data_remaining,
        "percent": max(0, min(100, percent)),
    }


def details(report: mp.MigrationStepFinished) -> str | None:
    """A step's action event details: libvirt's figures for a completed move."""
    if report.step != "live_migration" or report.result != "Success":
        return report.message
    total = f"{report.total_s:.2f} s" if report.total_s is not None else "unknown"
    downtime = f"{report.downtime_ms} ms" if report.downtime_ms is not None else "unknown"
    return f"moved in {total} (libvirt), downtime {downtime}"
