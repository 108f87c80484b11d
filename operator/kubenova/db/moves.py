"""Migrations (Nova's ``migrations``): the records of resizes and moves, and the claims that
keep source and destination both held while one is under way.

A move claims the instance's new home without letting go of the old one, as placement does
with migration-based allocations: in one transaction the instance's allocations on its source
are handed to the migration (``allocations.instance_uuid`` becomes the migration's uuid) and
the destination is claimed for the instance, with the new flavor's amounts. Confirming frees
what the migration holds; reverting frees the destination and hands the source back. An
evacuation holds its source after it is ``done`` too, until the source's host has returned and
dropped the guest (:func:`complete_evacuation`). The lock order is that of
:mod:`kubenova.db.claims`: the instance row, the group row, node rows, then allocation and
member rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import claims, exceptions, instances, models, server_groups
from kubenova.db import engine as db_engine

# Migration types, as Nova names them.
RESIZE = "resize"
COLD = "migration"
LIVE = "live-migration"
EVACUATION = "evacuation"

# Statuses of a resize or cold migration, as Nova's; ``finished`` awaits confirmation.
PRE_MIGRATING = "pre-migrating"
MIGRATING = "migrating"
POST_MIGRATING = "post-migrating"
FINISHED = "finished"
CONFIRMING = "confirming"
CONFIRMED = "confirmed"
REVERTING = "reverting"
REVERTED = "reverted"
ERROR = "error"
# A live migration's two post steps run at once, on both hosts: ``post-migrating`` awaits
# both, ``confirming`` the source's (the destination's is in), ``source-cleaned`` the
# destination's (the source's is in).
SOURCE_CLEANED = "source-cleaned"
# Statuses of an evacuation, as Nova's: ``done`` once the instance is rebuilt on its new host
# while the migration still holds its allocations on the source (whose host is down), then
# ``completed`` once that host has dropped the guest and the allocations are freed; ``failed``.
EVACUATED = "done"
COMPLETED = "completed"
FAILED = "failed"
#: Statuses after which a migration holds nothing and nothing more happens to it.
DONE: Final = frozenset({CONFIRMED, REVERTED, ERROR, COMPLETED, FAILED, "cancelled"})
#: Statuses of a migration no longer under way: DONE's, and an evacuation ``done`` (its
#: instance may move again while the source's allocations wait for that host to return).
NOT_IN_PROGRESS: Final = DONE | {EVACUATED}

_ALLOCATIONS: Final = models.table(models.Allocation)
_HAND_OVER: Final = (
    _ALLOCATIONS.update()
    .where(_ALLOCATIONS.c.instance_uuid == sa.bindparam("b_from"))
    .values(instance_uuid=sa.bindparam("b_to"))
)


@dataclasses.dataclass(frozen=True)
class MoveRequest:
    """A move to claim: its migration's record, and what the destination must hold."""

    migration_uuid: str
    instance_uuid: str
    migration_type: str
    dest_host: str
    new_usage: claims.Usage
    old_flavor: Mapping[str, Any]
    new_flavor: Mapping[str, Any]
    request_id: str | None
    power_on: bool
    server_group: server_groups.ServerGroupClaim | None = None
    #: The InstanceMigration that asked for it (namespace-local name and uid).
    object_name: str | None = None
    object_uid: str | None = None


class NotMovableError(exceptions.DBError):
    """The instance cannot start a move now (placed nowhere, or already moving)."""


class _Refused(Exception):
    """Undoes the transaction of a refused claim (the hand-over included)."""

    def __init__(self, result: claims.ClaimResult) -> None:
        super().__init__(result.refusal)
        self.result = result


@db_engine.retry_on_deadlock
def claim_move(session_factory: db_engine.SessionFactory, move: MoveRequest) -> claims.ClaimResult:
    """Claim ``move.dest_host`` for the instance and record the migration, which takes over
    the instance's allocations on its source; a false result (nothing changed) names why the
    destination refused. Raises :class:`InstanceNotFoundError` for an instance with no live
    record and :class:`UnexpectedStateError` for one placed nowhere or already moving."""
    try:
        with db_engine.transaction(session_factory) as session:
            record = instances.instance_lock(session, move.instance_uuid)
            if record is None:
                raise exceptions.InstanceNotFoundError(move.instance_uuid)
            if record.host is None:
                raise NotMovableError(f"instance {move.instance_uuid} is placed on no host")
            if migration_in_progress(session, move.instance_uuid) is not None:
                raise NotMovableError(f"instance {move.instance_uuid} is already moving")
            group = None
            if move.server_group is not None:
                group = server_groups.lock_for_claim(session, move.server_group)
            conn = session.connection()
            conn.execute(_HAND_OVER, {"b_from": move.instance_uuid, "b_to": move.migration_uuid})
            if group is not None:
                refusal = claims.group_refusal(session, group, move.instance_uuid, move.dest_host)
                if refusal is not None:
                    raise _Refused(claims.ClaimResult(refusal))
            node = claims.claim_on_node(conn, move.dest_host, move.new_usage)
            if isinstance(node, claims.ClaimResult):
                raise _Refused(node)
            node_id, node_name = node
            now = models.utcnow()
            claims.insert_allocations(conn, move.instance_uuid, node_id, move.new_usage, now)
            session.add(
                models.Migration(
                    uuid=move.migration_uuid,
                    instance_uuid=move.instance_uuid,
                    migration_type=move.migration_type,
                    status=PRE_MIGRATING,
                    source_compute=record.host,
                    source_node=record.node,
                    dest_compute=move.dest_host,
                    dest_node=node_name,
                    old_flavor=dict(move.old_flavor),
                    new_flavor=dict(move.new_flavor),
                    request_id=move.request_id,
                    power_on=move.power_on,
                    object_name=move.object_name,
                    object_uid=move.object_uid,
                )
            )
    except _Refused as refused:
        return refused.result
    return claims.CLAIMED


@db_engine.retry_on_deadlock
def confirm_move(
    session_factory: db_engine.SessionFactory, migration_uuid: str, **instance_values: Any
) -> models.Instance | None:
    """The move is kept: free the source the migration holds, mark it confirmed and set
    ``instance_values`` on the instance; the instance (None when it has no live record)."""
    with db_engine.transaction(session_factory) as session:
        record, migration = _lock(session, migration_uuid)
        confirm_locked(session, record, migration, **instance_values)
        return record


def confirm_locked(
    session: orm.Session,
    record: models.Instance | None,
    migration: models.Migration,
    **instance_values: Any,
) -> None:
    """:func:`confirm_move` in the caller's transaction, which has locked the instance's row
    and then the migration's (the order of every claim)."""
    if migration.status not in DONE:
        claims.free_allocations(session, migration.uuid)
    _finish(migration, CONFIRMED)
    if record is not None and instance_values:
        instances.instance_set(session, record, **instance_values)


@db_engine.retry_on_deadlock
def revert_move(
    session_factory: db_engine.SessionFactory,
    migration_uuid: str,
    status: str = REVERTED,
    message: str | None = None,
    **instance_values: Any,
) -> models.Instance | None:
    """The move is undone: free the destination, hand the source back to the instance, mark
    the migration ``status`` and set ``instance_values`` on the instance."""
    with db_engine.transaction(session_factory) as session:
        record, migration = _lock(session, migration_uuid)
        revert_locked(session, record, migration, status, message, **instance_values)
        return record


def revert_locked(
    session: orm.Session,
    record: models.Instance | None,
    migration: models.Migration,
    status: str = REVERTED,
    message: str | None = None,
    **instance_values: Any,
) -> None:
    """:func:`revert_move` in the caller's transaction, which has locked the instance's row
    and then the migration's (the order of every claim)."""
    if migration.status not in DONE:
        claims.free_allocations(session, migration.instance_uuid)
        session.connection().execute(
            _HAND_OVER, {"b_from": migration.uuid, "b_to": migration.instance_uuid}
        )
    _finish(migration, status, message)
    if record is not None and instance_values:
        instances.instance_set(session, record, **instance_values)


@db_engine.retry_on_deadlock
def abandon_moves(session_factory: db_engine.SessionFactory, instance_uuid: str) -> set[str]:
    """The instance is being deleted: free what its unfinished migrations hold and mark them
    cancelled; the hosts they involve (whose leftovers must go too)."""
    hosts: set[str] = set()
    with db_engine.transaction(session_factory) as session:
        instances.instance_get(session, instance_uuid, read_deleted=True, for_update=True)
        unfinished = session.scalars(
            sa.select(models.Migration).where(
                models.Migration.instance_uuid == instance_uuid,
                models.Migration.status.not_in(DONE),
            )
        ).all()
        for migration in unfinished:
            claims.free_allocations(session, migration.uuid)
            _finish(migration, "cancelled", "the instance was deleted")
            hosts.update(h for h in (migration.source_compute, migration.dest_compute) if h)
    return hosts


def migration_get(
    session: orm.Session, migration_uuid: str, *, for_update: bool = False
) -> models.Migration | None:
    """The live migration, locked (``FOR UPDATE``) when asked: lock its instance's row first,
    as every claim does."""
    select = sa.select(models.Migration).where(
        models.Migration.uuid == migration_uuid, models.live(models.Migration)
    )
    return session.scalars(select.with_for_update() if for_update else select).one_or_none()


def migration_of_object(session: orm.Session, object_uid: str) -> models.Migration | None:
    """The migration an InstanceMigration asked for, if it got that far."""
    return session.scalars(
        sa.select(models.Migration).where(
            models.Migration.object_uid == object_uid, models.live(models.Migration)
        )
    ).one_or_none()


def migration_in_progress(session: orm.Session, instance_uuid: str) -> models.Migration | None:
    """The instance's migration that is not done yet, if any (at most one at a time)."""
    return session.scalars(
        sa.select(models.Migration)
        .where(
            models.Migration.instance_uuid == instance_uuid,
            models.Migration.status.not_in(NOT_IN_PROGRESS),
            models.live(models.Migration),
        )
        .order_by(models.Migration.id.desc())
        .limit(1)
    ).one_or_none()


def evacuation_from(
    session: orm.Session, instance_uuid: str, source_host: str
) -> models.Migration | None:
    """The instance's latest evacuation away from ``source_host`` that did not fail, if any
    (the guest that host may still hold is no longer the instance)."""
    return session.scalars(
        sa.select(models.Migration)
        .where(
            models.Migration.instance_uuid == instance_uuid,
            models.Migration.migration_type == EVACUATION,
            models.Migration.source_compute == source_host,
            models.Migration.status != FAILED,
            models.live(models.Migration),
        )
        .order_by(models.Migration.id.desc())
        .limit(1)
    ).one_or_none()


def evacuation_holds_source(session: orm.Session, instance_uuid: str) -> bool:
    """Whether an evacuation of the instance still holds allocations on its source."""
    return (
        session.scalars(
            sa.select(models.Migration.id)
            .where(
                models.Migration.instance_uuid == instance_uuid,
                models.Migration.migration_type == EVACUATION,
                models.Migration.status.not_in(DONE),
                models.live(models.Migration),
            )
            .limit(1)
        ).first()
        is not None
    )


def evacuated_sources(session: orm.Session) -> set[str]:
    """The hosts that still hold allocations (and perhaps guests) of evacuations ``done``."""
    return set(
        session.scalars(
            sa.select(models.Migration.source_compute)
            .where(
                models.Migration.migration_type == EVACUATION,
                models.Migration.status == EVACUATED,
                models.live(models.Migration),
            )
            .distinct()
        )
    )


def evacuations_awaiting(session: orm.Session, source_host: str) -> list[tuple[str, str]]:
    """(migration uuid, instance uuid) of each evacuation ``done`` away from
    ``source_host``: what that host must drop when it returns."""
    rows = session.execute(
        sa.select(models.Migration.uuid, models.Migration.instance_uuid).where(
            models.Migration.migration_type == EVACUATION,
            models.Migration.status == EVACUATED,
            models.Migration.source_compute == source_host,
            models.live(models.Migration),
        )
    )
    return [(migration_uuid, instance_uuid) for migration_uuid, instance_uuid in rows]


def complete_evacuation(session: orm.Session, migration_uuid: str) -> bool:
    """The source of an evacuation ``done`` no longer holds the guest: free what the migration
    holds there and mark it completed, in the caller's transaction; whether it was awaited."""
    _record, migration = _lock(session, migration_uuid)
    if migration.status != EVACUATED:
        return False
    claims.free_allocations(session, migration_uuid)
    _finish(migration, COMPLETED)
    return True


def migration_set_status(
    session: orm.Session, migration: models.Migration, status: str, message: str | None = None
) -> None:
    migration.status = status
    if message is not None:
        migration.message = message[:1024]


def migrations_to_confirm(
    session: orm.Session, finished_before: dt.datetime
) -> list[models.Migration]:
    """Resizes and cold migrations that have waited for confirmation since before
    ``finished_before`` (Nova's ``resize_confirm_window``)."""
    return list(
        session.scalars(
            sa.select(models.Migration).where(
                models.Migration.status == FINISHED,
                models.Migration.finished_at < finished_before,
                models.live(models.Migration),
            )
        )
    )


def _lock(
    session: orm.Session, migration_uuid: str
) -> tuple[models.Instance | None, models.Migration]:
    """The migration's instance and the migration, locked in the order of every claim: the
    instance row first."""
    select = sa.select(models.Migration).where(models.Migration.uuid == migration_uuid)
    found = session.scalars(select).one_or_none()
    if found is None:
        raise NotMovableError(f"migration {migration_uuid} does not exist")
    record = instances.instance_get(session, found.instance_uuid, for_update=True)
    session.refresh(found, with_for_update=True)
    return record, found


def _finish(migration: models.Migration, status: str, message: str | None = None) -> None:
    migration.status = status
    migration.finished_at = migration.finished_at or models.utcnow()
    if message is not None:
        migration.message = message[:1024]
