"""Instance records: create, read, update (optionally compare-and-swap), soft delete.

Every function runs in the caller's transaction (see :mod:`kubenova.db.api`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from kubenova.db import exceptions, models, server_groups

# States written by this module (the full sets belong to the state model).
VM_STATE_BUILDING: Final = "building"
VM_STATE_DELETED: Final = "deleted"
TASK_STATE_SCHEDULING: Final = "scheduling"
POWER_STATE_NOSTATE: Final = "nostate"

# User data is capped at 64 KiB raw, as the design says; 87,384 characters in base64.
MAX_USER_DATA_BYTES: Final = 64 * 1024
MAX_USER_DATA_B64: Final = 4 * ((MAX_USER_DATA_BYTES + 2) // 3)

_INSTANCE_IMMUTABLE: Final = frozenset({"id", "uuid", "created_at", "deleted", "deleted_at"})
_INSTANCE_UPDATABLE: Final = (
    frozenset(c.key for c in sa.inspect(models.Instance).column_attrs) - _INSTANCE_IMMUTABLE
)

_UNSET: Any = object()


_INSTANCES: Final = models.table(models.Instance)
# Built once: building a statement and its cache key costs more CPU than running it.
_INSERT_INSTANCE: Final = _INSTANCES.insert()
_SELECT_INSTANCE_FOR_UPDATE: Final = (
    sa.select(_INSTANCES).where(_INSTANCES.c.uuid == sa.bindparam("b_uuid")).with_for_update()
)
_UPDATE_LIVE_INSTANCE: Final = _INSTANCES.update().where(
    _INSTANCES.c.uuid == sa.bindparam("b_uuid"), _INSTANCES.c.deleted == 0
)


def instance_insert(
    session: orm.Session,
    *,
    uuid: str,
    name: str,
    namespace: str,
    hostname: str | None,
    flavor: dict[str, Any],
    image: dict[str, Any],
    user_data_b64: str | None,
    ssh_keys: Sequence[str] | None,
    request_id: str | None,
    generation: int,
    availability_zone: str | None = None,
    placed: Mapping[str, Any] | None = None,
) -> tuple[models.Instance, bool]:
    """Record a new instance in ``building``/``scheduling``, or find the live record; the
    record, and whether this call inserted it (True) or found it (False).

    ``availability_zone`` is the zone the user asked for (None: any), kept for reschedules.
    ``placed``: columns a new record starts with instead of the defaults (checked as
    :func:`instance_update` checks them), for a record written by the claim that placed it
    (``host``, ``node``, ``task_state``...); a record that exists is returned as it is.

    Idempotent: a handler that runs twice for one object gets the first record back unchanged.
    Two concurrent creates of one uuid are settled by the unique key; the loser returns the
    winner's row. A uuid whose record was soft-deleted raises :class:`InstanceDeletedError`
    (Kubernetes never reuses a uid, so that object is gone). User data that is not base64 or
    decodes to more than 64 KiB raises ``ValueError``.

    A new record comes back as an object the session does not hold (the row was written with
    one Core ``INSERT``, not through the unit of work), carrying every value written; the
    caller's transaction holds the new row's lock until it ends.
    """
    _check_user_data(user_data_b64)
    values: dict[str, Any] = {
        "uuid": uuid,
        "name": name,
        "namespace": namespace,
        "project_id": namespace,
        "hostname": hostname,
        "host": None,
        "node": None,
        "flavor": dict(flavor),
        "image": dict(image),
        "vm_state": VM_STATE_BUILDING,
        "task_state": TASK_STATE_SCHEDULING,
        "power_state": POWER_STATE_NOSTATE,
        "user_data": user_data_b64,
        "ssh_authorized_keys": list(ssh_keys) if ssh_keys is not None else None,
        "addresses": [],
        "request_id": request_id,
        "generation": generation,
        "availability_zone": availability_zone,
        "attempts": 0,
        "alternates": None,
        "tried_hosts": None,
        "launched_at": None,
        "terminated_at": None,
        "created_at": models.utcnow(),
        "deleted": 0,
    }
    if placed:
        overrides = dict(placed)
        check_update_values(overrides)
        values.update(overrides)
    # Insert first: a new object is the common case, and a read before the insert would
    # cost every create a statement. No savepoint: MariaDB undoes only the failed statement
    # on a duplicate key, and a Core statement's error leaves the session's transaction
    # as it was (a failed ORM flush would not).
    try:
        result = session.connection().execute(_INSERT_INSTANCE, values)
    except sa_exc.IntegrityError:
        # A locking read sees the row the other transaction committed, which this
        # transaction's REPEATABLE READ snapshot would hide. A shared lock, because the
        # duplicate-key check already left a shared lock on that row: asking for an
        # exclusive one would deadlock with a third creator holding the same.
        existing = session.scalars(
            sa.select(models.Instance)
            .where(models.Instance.uuid == uuid)
            .with_for_update(read=True)
        ).one_or_none()
        if existing is None:
            raise
    else:
        (new_id,) = result.inserted_primary_key or (None,)
        return models.Instance(id=new_id, **values), True
    if existing.deleted:
        raise exceptions.InstanceDeletedError(uuid)
    return existing, False


def _check_user_data(user_data_b64: str | None) -> None:
    if user_data_b64 is None:
        return
    # Length alone cannot tell 64 KiB from 64 KiB + 1 byte (same padded length): decode.
    if len(user_data_b64) > MAX_USER_DATA_B64:
        raise ValueError(f"user data is longer than {MAX_USER_DATA_BYTES} bytes")
    try:
        raw = base64.b64decode(user_data_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"user data is not valid base64: {exc}") from exc
    if len(raw) > MAX_USER_DATA_BYTES:
        raise ValueError(f"user data is {len(raw)} bytes, more than {MAX_USER_DATA_BYTES}")


def instance_get(
    session: orm.Session, uuid: str, *, read_deleted: bool = False, for_update: bool = False
) -> models.Instance | None:
    """The instance with this uuid, or None. Soft-deleted records only with ``read_deleted``.

    ``for_update`` locks the row until the caller's transaction ends.
    """
    stmt = sa.select(models.Instance).where(models.Instance.uuid == uuid)
    if not read_deleted:
        stmt = stmt.where(models.live(models.Instance))
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def instance_get_all(
    session: orm.Session, *, host: str | None = None, read_deleted: bool = False
) -> list[models.Instance]:
    """All instances, or those on ``host``; for audits and for an agent's resync."""
    stmt = sa.select(models.Instance).order_by(models.Instance.id)
    if host is not None:
        stmt = stmt.where(models.Instance.host == host)
    if not read_deleted:
        stmt = stmt.where(models.live(models.Instance))
    return list(session.scalars(stmt))


def instances_in_task_states(
    session: orm.Session, task_states: Collection[str]
) -> list[models.Instance]:
    """Live instances with one of ``task_states`` under way: what a restart must finish or
    roll back."""
    return list(
        session.scalars(
            sa.select(models.Instance)
            .where(models.Instance.task_state.in_(list(task_states)), models.live(models.Instance))
            .order_by(models.Instance.id)
        )
    )


def instance_uuids_created_before(session: orm.Session, cutoff: dt.datetime) -> set[str]:
    """The uuids of the live instances recorded before ``cutoff`` (one indexed column each,
    not whole records: the orphan sweep reads them all)."""
    return set(
        session.scalars(
            sa.select(models.Instance.uuid).where(
                models.live(models.Instance), models.Instance.created_at <= cutoff
            )
        )
    )


def instance_count_by_host(session: orm.Session) -> dict[str, int]:
    """How many live instances each host holds (placed there, whatever their state)."""
    rows = session.execute(
        sa.select(models.Instance.host, sa.func.count())
        .where(models.live(models.Instance), models.Instance.host.is_not(None))
        .group_by(models.Instance.host)
    )
    return {str(host): int(count) for host, count in rows}


def instance_update(
    session: orm.Session,
    uuid: str,
    /,
    *,
    expected_vm_state: str | Collection[str | None] | None = _UNSET,
    expected_task_state: str | Collection[str | None] | None = _UNSET,
    **values: Any,
) -> models.Instance:
    """Set columns of a live instance and return it; raises :class:`InstanceNotFoundError`.

    ``expected_task_state`` / ``expected_vm_state`` make the update a compare-and-swap, as in
    Nova: the row is locked, and if the state is not one of those given,
    :class:`UnexpectedStateError` is raised and nothing changes. ``id``, ``uuid`` and the
    soft-delete columns cannot be set here.

    The reschedule bookkeeping is checked for shape, since the scheduler reads it back:
    ``attempts`` a non-negative int, ``alternates`` a list of host names,
    ``tried_hosts`` a list of ``{"host": str, "reason": str}``, ``availability_zone`` a
    string (each may be None but ``attempts``). JSON columns are replaced, never changed in
    place: pass a new list, e.g. ``tried_hosts=[*instance.tried_hosts, entry]``.
    """
    check_update_values(values)
    instance = instance_get(session, uuid, for_update=True)
    if instance is None:
        raise exceptions.InstanceNotFoundError(uuid)
    for field, expected in (
        ("vm_state", expected_vm_state),
        ("task_state", expected_task_state),
    ):
        if expected is _UNSET:
            continue
        allowed = {expected} if expected is None or isinstance(expected, str) else set(expected)
        actual = getattr(instance, field)
        if actual not in allowed:
            raise exceptions.UnexpectedStateError(uuid, field, sorted(map(str, allowed)), actual)
    for key, value in values.items():
        setattr(instance, key, value)
    session.flush()
    return instance


def instance_set(session: orm.Session, instance: models.Instance, /, **values: Any) -> None:
    """Set columns of a live instance the caller already locked in this transaction
    (:func:`instance_lock`, or ``instance_get(..., for_update=True)``), with the checks of
    :func:`instance_update`; it saves reading the row a second time.

    One Core ``UPDATE``; ``instance`` is brought up to date without being marked changed,
    so a record the session holds is not written a second time at flush.
    """
    check_update_values(values)
    if instance.deleted:
        raise exceptions.InstanceNotFoundError(instance.uuid)
    if not values:
        return
    _update_live(session, instance.uuid, values)
    for key, value in values.items():
        orm.attributes.set_committed_value(instance, key, value)


def instance_update_unread(session: orm.Session, uuid: str, /, **values: Any) -> None:
    """Set columns of a live instance with one UPDATE and no read, for a caller that holds a
    current copy of the row (with the checks of :func:`instance_update`, no compare-and-swap).
    Raises :class:`InstanceNotFoundError` when no live row matched; no values, no statement."""
    check_update_values(values)
    if values:
        _update_live(session, uuid, values)


def _update_live(session: orm.Session, uuid: str, values: dict[str, Any]) -> None:
    # The SET clause is the parameters' column names; updated_at follows its onupdate.
    result = session.connection().execute(_UPDATE_LIVE_INSTANCE, {"b_uuid": uuid, **values})
    # PyMySQL reports rows matched, not rows changed (SQLAlchemy sets CLIENT.FOUND_ROWS).
    if result.rowcount != 1:
        raise exceptions.InstanceNotFoundError(uuid)


def instance_lock(
    session: orm.Session, uuid: str, *, read_deleted: bool = False
) -> models.Instance | None:
    """The instance's row, locked (``FOR UPDATE``) until the caller's transaction ends, as a
    record that is not in the session: one Core ``SELECT``, none of the ORM's loading. Change
    it with :func:`instance_set`. None when there is no such (live, unless ``read_deleted``)
    record.
    """
    row = (
        session.connection()
        .execute(_SELECT_INSTANCE_FOR_UPDATE, {"b_uuid": uuid})
        .mappings()
        .one_or_none()
    )
    if row is None or (row["deleted"] and not read_deleted):
        return None
    return models.Instance(**row)


def check_update_values(values: dict[str, Any]) -> None:
    """Raise ``ValueError`` for a column that cannot be updated or a bad reschedule field;
    list values (alternates, tried hosts) are copied in place, so the caller's stay its own."""
    unknown = set(values) - _INSTANCE_UPDATABLE
    if unknown:
        raise ValueError(f"cannot update instance field(s): {', '.join(sorted(unknown))}")
    _check_reschedule_fields(values)


def _check_reschedule_fields(values: dict[str, Any]) -> None:
    if "attempts" in values:
        attempts = values["attempts"]
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise ValueError(f"attempts must be a non-negative int, not {attempts!r}")
    zone = values.get("availability_zone")
    if zone is not None and not isinstance(zone, str):
        raise ValueError(f"availability_zone must be a string or None, not {zone!r}")
    alternates = values.get("alternates")
    if alternates is not None:
        if not isinstance(alternates, list) or not all(isinstance(h, str) for h in alternates):
            raise ValueError(f"alternates must be a list of host names, not {alternates!r}")
        values["alternates"] = list(alternates)
    tried = values.get("tried_hosts")
    if tried is not None:
        if not isinstance(tried, list) or not all(_is_tried_host(entry) for entry in tried):
            raise ValueError(
                f'tried_hosts must be a list of {{"host": str, "reason": str}}, not {tried!r}'
            )
        values["tried_hosts"] = [dict(entry) for entry in tried]


def _is_tried_host(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) == {"host", "reason"}
        and all(isinstance(v, str) for v in entry.values())
    )


def instance_soft_delete(session: orm.Session, uuid: str) -> models.Instance:
    """Soft-delete an instance: ``deleted = id``, ``deleted_at`` now, vm_state ``deleted``.

    Idempotent: an already deleted record is returned unchanged. A uuid that was never recorded
    raises :class:`InstanceNotFoundError`. Allocations are not touched: release them first with
    :func:`release_resources` (the delete flow does both, in that order). Server group
    memberships are deleted in the same transaction (after the instance row lock, as the
    lock order wants), so a deleted instance frees its place in its group at once.
    """
    instance = instance_get(session, uuid, read_deleted=True, for_update=True)
    if instance is None:
        raise exceptions.InstanceNotFoundError(uuid)
    if instance.deleted:
        return instance
    server_groups.server_group_remove_member(session, uuid)
    now = models.utcnow()
    instance.deleted = instance.id
    instance.deleted_at = now
    instance.vm_state = VM_STATE_DELETED
    instance.task_state = None
    if instance.terminated_at is None:
        instance.terminated_at = now
    session.flush()
    return instance
