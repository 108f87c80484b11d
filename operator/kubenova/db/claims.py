"""Claims: the resources instances hold on compute nodes, kept from ever overcommitting.

:func:`claim_resources` and :func:`release_resources` own their transaction (they take the
session factory): their correctness depends on what they lock, in which order, and on running
the whole transaction again after a deadlock.

Lock order, the same in both, so claims and releases cannot deadlock on each other: the
``instances`` row, then (a claim into a server group only) the ``server_groups`` row, then
``compute_nodes`` rows (by id), then ``allocations`` and ``server_group_members`` rows. No
range locks are taken on ``allocations``. ``compute_nodes.*_used`` always equals the sum of
the node's allocations, because both change in the same transaction; and an instance holds
allocations only while ``instances.host`` is set, because a claim sets the host with its
allocations and a release that clears the host frees them in the same transaction.
:mod:`kubenova.db.server_groups` keeps the same order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova import placement
from kubenova.db import engine as db_engine
from kubenova.db import exceptions, instances, models, server_groups

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Usage:
    """Amounts of the three resource classes."""

    vcpus: int = 0
    memory_mib: int = 0
    disk_gib: int = 0

    def as_resources(self) -> dict[str, int]:
        """Keyed by placement resource class."""
        return {
            models.VCPU: self.vcpus,
            models.MEMORY_MB: self.memory_mib,
            models.DISK_GB: self.disk_gib,
        }


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    """What a claim did: true in a boolean context when the host took it; otherwise
    ``refusal`` says why, in the words of :mod:`kubenova.placement` (a ``REFUSED_*`` reason or
    the name of a group's hard policy)."""

    refusal: str | None = None

    def __bool__(self) -> bool:
        return self.refusal is None


CLAIMED: Final = ClaimResult()


_NODES: Final = models.table(models.ComputeNode)
_INSTANCES: Final = models.table(models.Instance)
# The claim's statements are built once: building a statement and its cache key costs the
# operator more CPU than running it.
_LOCK_LIVE_INSTANCE_HOST: Final = (
    sa.select(_INSTANCES.c.host)
    .where(_INSTANCES.c.uuid == sa.bindparam("b_uuid"), _INSTANCES.c.deleted == 0)
    .with_for_update()
)
#: ``record(session, placed)``: insert a new instance's record in the claim's transaction with
#: the columns in ``placed`` (host, node and the claim's instance values), or raise to undo
#: the claim (say, because a record exists after all).
RecordNewInstance = Callable[[orm.Session, Mapping[str, Any]], None]

# What a node has room for (placement's formula, on the row's columns), for the claim's
# UPDATE and for the read that says why a claim was refused.
_VCPUS_FIT: Final = _NODES.c.vcpus_used + sa.bindparam("b_vcpus") <= placement.allocatable(
    _NODES.c.vcpus, 0, _NODES.c.cpu_allocation_ratio
)
_MEMORY_FITS: Final = _NODES.c.memory_mib_used + sa.bindparam(
    "b_memory_mib"
) <= placement.allocatable(
    _NODES.c.memory_mib, _NODES.c.reserved_host_memory_mib, _NODES.c.ram_allocation_ratio
)
_DISK_FITS: Final = _NODES.c.local_gb_used + sa.bindparam("b_disk_gib") <= placement.allocatable(
    _NODES.c.local_gb, _NODES.c.reserved_host_disk_gib, _NODES.c.disk_allocation_ratio
)
_CLAIM_ON_NODE: Final = (
    _NODES.update()
    .where(
        _NODES.c.host == sa.bindparam("b_host"),
        _NODES.c.deleted == 0,
        # Disabling a host keeps every later claim away, whatever the scheduler's (cached)
        # view of hosts says.
        _NODES.c.disabled.is_(False),
        _VCPUS_FIT,
        _MEMORY_FITS,
        _DISK_FITS,
    )
    .values(
        vcpus_used=_NODES.c.vcpus_used + sa.bindparam("b_vcpus"),
        memory_mib_used=_NODES.c.memory_mib_used + sa.bindparam("b_memory_mib"),
        local_gb_used=_NODES.c.local_gb_used + sa.bindparam("b_disk_gib"),
        generation=_NODES.c.generation + 1,
    )
)
# Locking, so it reads the latest committed row even after the transaction's snapshot was
# taken (a claim into a server group reads its members first).
_WHY_NODE_REFUSED: Final = (
    sa.select(
        _NODES.c.disabled,
        _MEMORY_FITS.label("memory_fits"),
        _VCPUS_FIT.label("vcpus_fit"),
        _DISK_FITS.label("disk_fits"),
    )
    .where(_NODES.c.host == sa.bindparam("b_host"), _NODES.c.deleted == 0)
    .with_for_update(read=True)
)
_LIVE_NODE_OF_HOST: Final = sa.select(_NODES.c.id, _NODES.c.hypervisor_hostname).where(
    _NODES.c.host == sa.bindparam("b_host"), _NODES.c.deleted == 0
)
_INSERT_ALLOCATION: Final = models.table(models.Allocation).insert()


@db_engine.retry_on_deadlock
def claim_resources(
    session_factory: db_engine.SessionFactory,
    instance_uuid: str,
    host: str,
    vcpus: int,
    memory_mib: int,
    disk_gib: int,
    *,
    server_group: server_groups.ServerGroupClaim | None = None,
    instance_values: Mapping[str, Any] | None = None,
    record: RecordNewInstance | None = None,
) -> ClaimResult:
    """Claim resources for an instance on ``host``; :data:`CLAIMED` (true) if claimed, a
    false :class:`ClaimResult` naming the reason if they do not fit, the node is disabled or
    unknown, or, with ``server_group``, the group's hard policy refuses the host.

    ``record``, for an instance that has no record yet: the claim calls it once the host's
    usage is claimed, in the same transaction, with the columns the claim sets (``host``,
    ``node`` and ``instance_values``), and it inserts the record with them (see
    :data:`RecordNewInstance`). Step 1 and the final UPDATE are then left out: a create
    records and places its instance in one transaction instead of two.

    One transaction, which the database keeps from overcommitting however many claims race, in
    this process or any other:

    1. The instance row is locked, so claims and releases of one instance run one at a time.
       Already holding the same allocations on this host returns True (idempotent); holding
       others raises :class:`AllocationConflictError`. Only an instance with a host can hold
       any, so only its allocations are read.
    2. One conditional ``UPDATE compute_nodes SET *_used = *_used + amount ... WHERE host = h
       AND <every *_used + amount fits (total - reserved) * ratio>``. InnoDB evaluates the
       condition on the latest committed row under an exclusive row lock, so concurrent claims
       on one host are serialized and each sees the others' usage: no check-then-act gap. One
       row changed means the claim fits; none means it does not (or the host is unknown).
       A disabled node (``compute_nodes.disabled``) takes no new claim either. Only then is
       the node read again, to say which of these refused it.
    3. Three allocation rows are inserted and ``instances.host``/``node`` set, with
       ``instance_values`` (other columns, checked as :func:`instances.instance_update`
       checks them) in the same UPDATE, then commit. A caller that records the outcome of
       scheduling (attempt, task state) this way needs no transaction of its own after.

    With ``server_group``, between steps 1 and 2 the group row is locked (``FOR UPDATE``), so
    claims into one group run one at a time, and the group's live members are counted per
    host, leaving this instance out. Hard ``anti-affinity`` refuses a host holding
    ``max_server_per_host`` members (1 without the rule), hard ``affinity`` a host other
    than the members'; soft policies never refuse. A refusal, named by the policy, changes
    nothing. On success the instance becomes a member in the same transaction, so the next
    claim of the group, which waits for the lock, counts it. The count is a plain read taken
    after the group lock and before any other plain read of the transaction, so its
    REPEATABLE READ snapshot holds every member committed by earlier holders of the lock
    (see :func:`kubenova.db.server_groups.lock_for_claim`). The same instance claiming again
    on the same host with the same amounts is still True, and stays one member.

    Deadlocks and lock wait timeouts re-run the whole transaction (``retry_on_deadlock``).
    Raises :class:`InstanceNotFoundError` when the instance has no live record and
    :class:`ServerGroupNotFoundError` when the group is deleted.
    """
    wanted = Usage(vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib)
    if min(vcpus, memory_mib, disk_gib) < 0:
        raise ValueError(f"cannot claim negative amounts: {wanted}")
    extra = dict(instance_values or {})
    instances.check_update_values(extra)
    if {"host", "node"} & extra.keys():
        raise ValueError("the claim sets host and node itself")
    now = models.utcnow()
    with db_engine.transaction(session_factory) as session:
        conn = session.connection()
        has_host = False
        if record is None:
            # Only the row lock and the host: loading the whole record would cost more than
            # the rest of the claim, and nothing else here reads it.
            locked = conn.execute(_LOCK_LIVE_INSTANCE_HOST, {"b_uuid": instance_uuid}).one_or_none()
            if locked is None:
                raise exceptions.InstanceNotFoundError(instance_uuid)
            has_host = locked.host is not None
        # Only locking reads until the group is locked: the snapshot of the first plain read
        # must include every member added by the group's previous claims.
        group = None
        if server_group is not None:
            group = server_groups.lock_for_claim(session, server_group)
        # An instance without a host holds nothing (allocations and instances.host change
        # together), so only one with a host is asked what it holds.
        held = _held_allocations(session, instance_uuid) if has_host else {}
        if held:
            if set(held) != {host} or held[host] != wanted:
                raise exceptions.AllocationConflictError(
                    instance_uuid, f"holds {held}, asked for {wanted} on {host}"
                )
            # A repeat of a claim that succeeded: still claimed, even if the group's rule was
            # tightened since. Only an instance that is not yet a member is checked.
            if group is not None and not server_groups.is_member(session, group.id, instance_uuid):
                refusal = group_refusal(session, group, instance_uuid, host)
                if refusal is not None:
                    return ClaimResult(refusal)
                server_groups.add_member(session, group.id, instance_uuid)
            instances.instance_update_unread(session, instance_uuid, **extra)
            return CLAIMED
        if group is not None:
            refusal = group_refusal(session, group, instance_uuid, host)
            if refusal is not None:
                return ClaimResult(refusal)
        node = claim_on_node(conn, host, wanted)
        if isinstance(node, ClaimResult):
            return node
        node_id, node_name = node
        placed = {**extra, "host": host, "node": node_name}
        if record is not None:
            # Before the allocations and the membership, which refer to the record.
            record(session, placed)
        insert_allocations(conn, instance_uuid, node_id, wanted, now)
        if group is not None:
            server_groups.add_member(session, group.id, instance_uuid)
        if record is None:
            instances.instance_update_unread(session, instance_uuid, **placed)
    return CLAIMED


def claim_on_node(conn: sa.Connection, host: str, wanted: Usage) -> tuple[int, str] | ClaimResult:
    """Step 2 of a claim: add ``wanted`` to ``host``'s usage if it fits (one conditional
    UPDATE); the node's id and name, or the refusal. The caller inserts the allocations."""
    amounts = {
        "b_vcpus": wanted.vcpus,
        "b_memory_mib": wanted.memory_mib,
        "b_disk_gib": wanted.disk_gib,
    }
    claimed = conn.execute(_CLAIM_ON_NODE, {"b_host": host, **amounts})
    if claimed.rowcount != 1:
        return ClaimResult(_node_refusal(conn, host, amounts))
    node_id, node_name = conn.execute(_LIVE_NODE_OF_HOST, {"b_host": host}).one()
    return int(node_id), str(node_name or host)


def insert_allocations(
    conn: sa.Connection, consumer: str, node_id: int, wanted: Usage, now: Any
) -> None:
    """One allocation row per resource class, held by ``consumer`` (an instance, or a
    migration holding its instance's source)."""
    conn.execute(
        _INSERT_ALLOCATION,
        [
            {
                "instance_uuid": consumer,
                "compute_node_id": node_id,
                "resource_class": resource_class,
                "used": amount,
                "created_at": now,
            }
            for resource_class, amount in wanted.as_resources().items()
        ],
    )


def _node_refusal(conn: sa.Connection, host: str, amounts: Mapping[str, int]) -> str:
    why = conn.execute(_WHY_NODE_REFUSED, {"b_host": host, **amounts}).one_or_none()
    if why is None:
        return placement.REFUSED_UNKNOWN_HOST
    if why.disabled:
        return placement.REFUSED_DISABLED
    missing = placement.missing_resource(
        memory_fits=bool(why.memory_fits),
        vcpus_fit=bool(why.vcpus_fit),
        disk_fits=bool(why.disk_fits),
    )
    # The UPDATE found no room, so one of them is missing.
    return missing or placement.REFUSED_NO_DISK


def group_refusal(
    session: orm.Session, group: models.ServerGroup, instance_uuid: str, host: str
) -> str | None:
    """The group's hard policy if it refuses ``host``, else None."""
    if group.policy not in placement.HARD_POLICIES:
        return None
    member_hosts = server_groups.server_group_member_hosts(
        session, group.id, exclude_instance=instance_uuid
    )
    refusal = placement.policy_refusal(group.policy, group.max_server_per_host, member_hosts, host)
    if refusal is None:
        return None
    LOG.info(
        "claim of %s on %s refused by server group %s: %s",
        instance_uuid,
        host,
        group.uuid,
        refusal,
    )
    return str(group.policy)


def _held_allocations(session: orm.Session, instance_uuid: str) -> dict[str, Usage]:
    # A plain read is enough: the caller holds the instance row lock, and every writer of this
    # instance's allocations takes it first, so nothing can change them under us.
    rows = session.execute(
        sa.select(models.ComputeNode.host, models.Allocation.resource_class, models.Allocation.used)
        .join(models.ComputeNode, models.ComputeNode.id == models.Allocation.compute_node_id)
        .where(models.Allocation.instance_uuid == instance_uuid)
    ).all()
    return _sum_by_host((host, rc, used) for host, rc, used in rows)


def _sum_by_host(rows: Iterable[tuple[str, str, Any]]) -> dict[str, Usage]:
    amounts: dict[str, dict[str, int]] = {}
    for host, resource_class, used in rows:
        per_class = amounts.setdefault(host, {})
        per_class[resource_class] = per_class.get(resource_class, 0) + int(used or 0)
    return {
        host: Usage(
            vcpus=c.get(models.VCPU, 0),
            memory_mib=c.get(models.MEMORY_MB, 0),
            disk_gib=c.get(models.DISK_GB, 0),
        )
        for host, c in amounts.items()
    }


@db_engine.retry_on_deadlock
def release_resources(
    session_factory: db_engine.SessionFactory,
    instance_uuid: str,
    *,
    clear_host: bool = False,
    consumer: str | None = None,
) -> bool:
    """Free every allocation of an instance and take it off its node's ``*_used`` counters.

    One transaction: the instance row is locked (deleted or not, so a release after the soft
    delete still works), its allocations read, each node's counters decremented with
    ``UPDATE ... SET *_used = *_used - amount`` (nodes in id order), and the allocation rows
    deleted by primary key. Idempotent: an instance holding nothing returns False and changes
    nothing; True means something was freed. ``clear_host`` also sets ``instances.host`` and
    ``node`` to NULL, as Nova does before a reschedule. ``consumer``: free what a migration of
    the instance holds instead (its source, once a resize is confirmed).
    """
    with db_engine.transaction(session_factory) as session:
        instance = instances.instance_get(
            session, instance_uuid, read_deleted=True, for_update=True
        )
        if clear_host and instance is not None:
            instance.host = None
            instance.node = None
        return free_allocations(session, consumer or instance_uuid)


def free_allocations(session: orm.Session, consumer: str) -> bool:
    """Free what ``consumer`` holds, in the caller's transaction, which holds the lock of the
    instance row it belongs to; False when it holds nothing."""
    node_t = models.ComputeNode
    alloc_t = models.Allocation
    # Safe without a locking read: see _held_allocations.
    allocations = session.execute(
        sa.select(alloc_t.id, alloc_t.compute_node_id, alloc_t.resource_class, alloc_t.used)
        .where(alloc_t.instance_uuid == consumer)
        .order_by(alloc_t.compute_node_id, alloc_t.id)
    ).all()
    if not allocations:
        return False
    per_node: dict[int, dict[str, int]] = {}
    for _id, node_id, resource_class, used in allocations:
        per_class = per_node.setdefault(node_id, {})
        per_class[resource_class] = per_class.get(resource_class, 0) + used
    for node_id in sorted(per_node):
        amounts = per_node[node_id]
        session.execute(
            sa.update(node_t)
            .where(node_t.id == node_id)
            .values(
                vcpus_used=node_t.vcpus_used - amounts.get(models.VCPU, 0),
                memory_mib_used=node_t.memory_mib_used - amounts.get(models.MEMORY_MB, 0),
                local_gb_used=node_t.local_gb_used - amounts.get(models.DISK_GB, 0),
                generation=node_t.generation + 1,
            )
            .execution_options(synchronize_session=False)
        )
    ids = [row[0] for row in allocations]
    deleted = session.execute(
        sa.delete(alloc_t).where(alloc_t.id.in_(ids)).execution_options(synchronize_session=False)
    )
    if cast(sa.CursorResult[Any], deleted).rowcount != len(ids):
        # Someone freed these rows without the instance lock: undo rather than
        # decrement twice.
        raise RuntimeError(f"allocations of {consumer} changed during release")
    return True
