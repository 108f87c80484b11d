"""Server groups: their records, their members, and the policy check a claim makes.

Every public function runs in the caller's transaction (see :mod:`kubenova.db.api`), except
the claim's part, which :func:`kubenova.db.claims.claim_resources` runs inside its own.

Concurrency. The group row is the lock of its membership: everything that adds members or
changes the policy locks that row first (``SELECT ... FOR UPDATE``), so claims of one group
run one at a time while claims of different groups do not wait for each other. Removing a
member needs no group lock: it can only make a policy easier to satisfy, so a claim that
counted the member a moment too long refuses conservatively, never wrongly admits.

Lock order, shared with :mod:`kubenova.db.claims`: ``instances`` row, then
``server_groups`` row, then ``compute_nodes`` rows (by id), then ``allocations`` and
``server_group_members`` rows. No function here locks a group after a compute node, nor an
instance row after a group, so none of them can deadlock with a claim; the deadlocks InnoDB
may still pick from gap locks are retried by whoever owns the transaction
(:func:`~kubenova.db.engine.retry_on_deadlock`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import mysql

from kubenova import placement
from kubenova.db import exceptions, models

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServerGroupClaim:
    """The group an instance joins when its claim succeeds, as the scheduler saw it.

    The claim enforces the policy read from the group row it locks, not these copies: the
    row is the truth at the instant of the claim, and a group without members may have
    changed policy since the scheduler read it. A difference is logged by the claim.
    """

    group_id: int
    policy: str
    max_server_per_host: int | None = None

    @classmethod
    def from_group(cls, group: models.ServerGroup) -> ServerGroupClaim:
        """The claim for a group record (e.g. from :func:`server_group_get`)."""
        return cls(
            group_id=group.id, policy=group.policy, max_server_per_host=group.max_server_per_host
        )


def validate_policy(policy: str, max_server_per_host: int | None) -> None:
    """Raise ``ValueError`` unless ``policy`` is one of Nova's four and the rule fits it.

    As in Nova (API microversion 2.64), ``max_server_per_host`` belongs to ``anti-affinity``
    only and must be at least 1.
    """
    if policy not in placement.SERVER_GROUP_POLICIES:
        known = ", ".join(placement.SERVER_GROUP_POLICIES)
        raise ValueError(f"unknown server group policy {policy!r}; known: {known}")
    if max_server_per_host is None:
        return
    if policy != placement.POLICY_ANTI_AFFINITY:
        raise ValueError(
            f"max_server_per_host applies to the {placement.POLICY_ANTI_AFFINITY} policy only, "
            f"not to {policy}"
        )
    if max_server_per_host < 1:
        raise ValueError(f"max_server_per_host must be at least 1, not {max_server_per_host}")


def server_group_upsert(
    session: orm.Session,
    *,
    uuid: str,
    name: str,
    namespace: str,
    policy: str,
    max_server_per_host: int | None,
) -> models.ServerGroup:
    """Record the ``ServerGroup`` object ``namespace/name`` (uid ``uuid``), or update it.

    Idempotent: the same arguments again change nothing. ``max_server_per_host`` may change
    at any time (it applies to later claims; members already placed stay where they are);
    ``policy`` only while the group has no members, else
    :class:`ServerGroupPolicyImmutableError`. Raises ``ValueError`` for a bad policy or rule,
    :class:`ServerGroupDeletedError` for the uuid of a deleted group, and
    :class:`ServerGroupConflictError` when another live record holds the name.

    Concurrency: ``INSERT ... ON DUPLICATE KEY UPDATE id = id`` makes the row exist (two
    concurrent first upserts cannot create two), then the row is locked before it is read,
    and the members are counted with a locking read: claims add members under the same row
    lock, so no member can appear between the count and the policy change.
    """
    validate_policy(policy, max_server_per_host)
    group_t = models.ServerGroup
    ensure = mysql.insert(group_t).values(
        uuid=uuid,
        name=name,
        namespace=namespace,
        project_id=namespace,
        policy=policy,
        max_server_per_host=max_server_per_host,
        created_at=models.utcnow(),
        deleted=0,
    )
    session.execute(ensure.on_duplicate_key_update(id=group_t.id))
    group = _get_by_uuid(session, uuid, for_update=True)
    if group is None:
        # The insert met the (namespace, name, deleted) key of another live group. Locking
        # read: the conflicting row may be newer than this transaction's snapshot.
        existing = session.scalars(
            sa.select(group_t)
            .where(group_t.namespace == namespace, group_t.name == name, models.live(group_t))
            .with_for_update()
        ).one()
        raise exceptions.ServerGroupConflictError(namespace, name, uuid, existing.uuid)
    if group.deleted:
        raise exceptions.ServerGroupDeletedError(uuid)
    if (group.namespace, group.name) != (namespace, name):
        raise ValueError(
            f"server group {uuid} is recorded as {group.namespace}/{group.name}, "
            f"not {namespace}/{name}"
        )
    if group.policy != policy:
        members = _count_members_locked(session, group.id)
        if members:
            raise exceptions.ServerGroupPolicyImmutableError(uuid, group.policy, policy, members)
        group.policy = policy
    group.max_server_per_host = max_server_per_host
    session.flush()
    return group


def _get_by_uuid(session: orm.Session, uuid: str, *, for_update: bool) -> models.ServerGroup | None:
    stmt = sa.select(models.ServerGroup).where(models.ServerGroup.uuid == uuid)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()


def _count_members_locked(session: orm.Session, group_id: int) -> int:
    # A shared locking read sees members committed after this transaction's snapshot, and
    # keeps them until the transaction ends. Members only: locking their instance rows too
    # would take instance locks after the group lock, against the lock order.
    rows = session.scalars(
        sa.select(models.ServerGroupMember.id)
        .where(models.ServerGroupMember.group_id == group_id)
        .with_for_update(read=True)
    ).all()
    return len(rows)


def server_group_get(session: orm.Session, namespace: str, name: str) -> models.ServerGroup | None:
    """The live group ``namespace/name``, or None."""
    return session.scalars(
        sa.select(models.ServerGroup).where(
            models.ServerGroup.namespace == namespace,
            models.ServerGroup.name == name,
            models.live(models.ServerGroup),
        )
    ).one_or_none()


def server_group_member_hosts(
    session: orm.Session, group_id: int, *, exclude_instance: str | None = None
) -> dict[str, int]:
    """How many live member instances each host runs: {host: count}.

    Members whose instance has no host (not placed yet, or released for a reschedule) and
    members whose instance is deleted do not count. ``exclude_instance`` leaves one member
    out (the claim leaves out the instance it places). A plain read: what filters and status
    projections need; the claim makes it under the group's lock (see the module docstring).
    """
    member_t = models.ServerGroupMember
    instance_t = models.Instance
    stmt = (
        sa.select(instance_t.host, sa.func.count())
        .select_from(member_t)
        .join(instance_t, instance_t.uuid == member_t.instance_uuid)
        .where(
            member_t.group_id == group_id,
            models.live(instance_t),
            instance_t.host.is_not(None),
        )
        .group_by(instance_t.host)
    )
    if exclude_instance is not None:
        stmt = stmt.where(member_t.instance_uuid != exclude_instance)
    return {cast(str, host): int(count) for host, count in session.execute(stmt)}


def server_group_members(session: orm.Session, group_id: int) -> list[str]:
    """The uuids of the group's live member instances, placed or not, oldest member first."""
    return list(
        session.scalars(
            sa.select(models.ServerGroupMember.instance_uuid)
            .join(models.Instance, models.Instance.uuid == models.ServerGroupMember.instance_uuid)
            .where(models.ServerGroupMember.group_id == group_id, models.live(models.Instance))
            .order_by(models.ServerGroupMember.id)
        )
    )


def server_group_remove_member(session: orm.Session, instance_uuid: str) -> int:
    """Delete the instance's memberships; how many rows went (0 when it had none).

    Called when an instance is deleted (:func:`kubenova.db.instances.instance_soft_delete`
    does it itself, in its transaction). The instance row is locked first, whatever its
    state, so no claim of this instance can add it back while the transaction runs.
    """
    session.execute(
        sa.select(models.Instance.id).where(models.Instance.uuid == instance_uuid).with_for_update()
    )
    deleted = session.execute(
        sa.delete(models.ServerGroupMember)
        .where(models.ServerGroupMember.instance_uuid == instance_uuid)
        .execution_options(synchronize_session=False)
    )
    return cast(sa.CursorResult[Any], deleted).rowcount


def lock_for_claim(session: orm.Session, claim: ServerGroupClaim) -> models.ServerGroup:
    """Lock the live group row for a claim; raises :class:`ServerGroupNotFoundError`.

    Must come after the instance row lock and before any compute node lock and before the
    transaction's first plain read: under REPEATABLE READ the snapshot is taken by the first
    plain read, and only a snapshot taken after this lock sees every member the previous
    holder of the lock added. The locked row's policy is the one to enforce; a difference
    from what the scheduler saw is logged.
    """
    group = session.scalars(
        sa.select(models.ServerGroup)
        .where(models.ServerGroup.id == claim.group_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if group is None or group.deleted:
        raise exceptions.ServerGroupNotFoundError(claim.group_id)
    if (group.policy, group.max_server_per_host) != (claim.policy, claim.max_server_per_host):
        LOG.warning(
            "server group %s is (%s, %s), was scheduled as (%s, %s): enforcing the former",
            group.uuid,
            group.policy,
            group.max_server_per_host,
            claim.policy,
            claim.max_server_per_host,
        )
    return group


def add_member(session: orm.Session, group_id: int, instance_uuid: str) -> None:
    """Make the instance a member; a no-op when it already is (a retried or repeated claim).

    ``ON DUPLICATE KEY UPDATE id = id`` rather than ``INSERT IGNORE``, which would also hide
    a foreign key failure.
    """
    stmt = mysql.insert(models.ServerGroupMember).values(
        group_id=group_id, instance_uuid=instance_uuid, created_at=models.utcnow()
    )
    session.execute(stmt.on_duplicate_key_update(id=models.ServerGroupMember.id))


def is_member(session: orm.Session, group_id: int, instance_uuid: str) -> bool:
    """Whether the instance is a member of the group (a plain read of its member row)."""
    found = session.scalar(
        sa.select(models.ServerGroupMember.id).where(
            models.ServerGroupMember.group_id == group_id,
            models.ServerGroupMember.instance_uuid == instance_uuid,
        )
    )
    return found is not None


@dataclasses.dataclass(frozen=True)
class ServerGroupUsage:
    """A live group's members and how many of them each host runs (its status)."""

    namespace: str
    name: str
    member_count: int
    hosts: dict[str, int]


def server_group_usage_all(session: orm.Session) -> list[ServerGroupUsage]:
    """Every live group with its live members counted, in two statements for all groups;
    members not placed yet count as members but on no host."""
    member_t = models.ServerGroupMember
    instance_t = models.Instance
    group_t = models.ServerGroup
    groups = session.execute(
        sa.select(group_t.id, group_t.namespace, group_t.name)
        .where(models.live(group_t))
        .order_by(group_t.namespace, group_t.name)
    ).all()
    counts: dict[int, int] = {}
    hosts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        sa.select(member_t.group_id, instance_t.host, sa.func.count())
        .join(instance_t, instance_t.uuid == member_t.instance_uuid)
        .where(models.live(instance_t))
        .group_by(member_t.group_id, instance_t.host)
    )
    for group_id, host, count in rows:
        counts[group_id] = counts.get(group_id, 0) + int(count)
        if host is not None:
            hosts.setdefault(group_id, {})[host] = int(count)
    return [
        ServerGroupUsage(namespace, name, counts.get(group_id, 0), hosts.get(group_id, {}))
        for group_id, namespace, name in groups
    ]
