"""The inputs of the periodic audits that converge records, claims and what hosts run.

Pure queries: nothing here writes. Each answer is one transaction's view, and under
REPEATABLE READ every query of one transaction reads the same snapshot, so run the queries of
one audit in one transaction. What a host reports is older than any snapshot (it was taken on
the host before the message travelled), so a difference can be a race rather than a fault: an
instance claimed on the host after the agent listed its domains looks missing, a domain
deleted in between looks orphaned. Act on a difference only when two audits in a row agree
(Nova's periodic tasks likewise wait out a grace period before touching a running domain).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import models, moves
from kubenova.db.claims import Usage

# Keeps each IN (...) list to a size every MySQL server parses quickly.
_CHUNK: Final = 500


class UsageDiscrepancy(NamedTuple):
    """A host whose usage counters (``compute_nodes.*_used``, what claims added up) differ
    from the sum of its allocations (what instances hold)."""

    host: str
    claimed: Usage
    allocated: Usage


@dataclasses.dataclass(frozen=True)
class UnrecordedDomains:
    """Instances a host reported running for which this host has no live record.

    - ``soft_deleted``: the record exists but is deleted (a delete that did not reach the host,
      or a host that was down at the time): the domain is a leftover to reap.
    - ``unknown``: no record was ever written for this uuid: not Kubenova's, or a record that
      was purged. Report it; never reap what the database never knew.
    - ``elsewhere``: the record is live but on another host or on none (a build that failed
      here and was rescheduled): a leftover on this host.
    """

    soft_deleted: list[str]
    unknown: list[str]
    elsewhere: list[str]


def usage_audit(session: orm.Session) -> list[UsageDiscrepancy]:
    """Every live compute node whose ``*_used`` counters differ from the sum of its
    allocations, ordered by host; empty when all agree (as claims and releases keep them).

    One statement, so the counters and the sums come from one snapshot whatever the
    isolation level, and a claim committing meanwhile cannot show as a difference.
    """
    node_t = models.ComputeNode
    alloc_t = models.Allocation

    def summed(resource_class: str) -> sa.ColumnElement[int]:
        return sa.func.coalesce(
            sa.func.sum(sa.case((alloc_t.resource_class == resource_class, alloc_t.used), else_=0)),
            0,
        )

    rows = session.execute(
        sa.select(
            node_t.host,
            node_t.vcpus_used,
            node_t.memory_mib_used,
            node_t.local_gb_used,
            summed(models.VCPU),
            summed(models.MEMORY_MB),
            summed(models.DISK_GB),
        )
        .outerjoin(alloc_t, alloc_t.compute_node_id == node_t.id)
        .where(models.live(node_t))
        .group_by(
            node_t.id, node_t.host, node_t.vcpus_used, node_t.memory_mib_used, node_t.local_gb_used
        )
        .order_by(node_t.host)
    ).all()
    found = []
    for host, vcpus_used, memory_used, disk_used, vcpus, memory, disk in rows:
        claimed = Usage(vcpus=int(vcpus_used), memory_mib=int(memory_used), disk_gib=int(disk_used))
        allocated = Usage(vcpus=int(vcpus), memory_mib=int(memory), disk_gib=int(disk))
        if claimed != allocated:
            found.append(UsageDiscrepancy(host=host, claimed=claimed, allocated=allocated))
    return found


def instances_not_reported_by_host(
    session: orm.Session,
    reports: Mapping[str, Iterable[str]],
    *,
    exclude_vm_states: Collection[str] = (),
) -> dict[str, list[str]]:
    """Uuids of live instances recorded on each host of ``reports`` (host -> the uuids it
    reported) that the host did not report, oldest record first: domains that vanished (or
    never got defined) behind the record's back. One statement per 500 hosts; every host of
    ``reports`` has an entry.

    ``exclude_vm_states`` leaves out records whose domain may rightly not exist yet, e.g.
    ``("building",)`` for builds whose message has not reached the host.
    """
    reported = {host: set(uuids) for host, uuids in reports.items()}
    found: dict[str, list[str]] = {host: [] for host in reported}
    instance_t = models.Instance
    for chunk in _chunks(sorted(reported)):
        stmt = (
            sa.select(instance_t.host, instance_t.uuid)
            .where(instance_t.host.in_(chunk), models.live(instance_t))
            .order_by(instance_t.id)
        )
        if exclude_vm_states:
            stmt = stmt.where(instance_t.vm_state.not_in(list(exclude_vm_states)))
        for host, uuid in session.execute(stmt):
            # host is one of the chunk's (the IN list never matches NULL).
            if host is not None and uuid not in reported[host]:
                found[host].append(uuid)
    return found


def reported_without_live_record_by_host(
    session: orm.Session, reports: Mapping[str, Iterable[str]]
) -> dict[str, UnrecordedDomains]:
    """Sort the uuids each host of ``reports`` (host -> the uuids it reported) reported that
    have no live record on it (see :class:`UnrecordedDomains`); each list sorted, each uuid
    once. Each reported uuid's record is read once for all hosts."""
    reported = {host: sorted(set(uuids)) for host, uuids in reports.items()}
    everything = sorted({uuid for uuids in reported.values() for uuid in uuids})
    records: dict[str, tuple[int, str | None]] = {}
    for chunk in _chunks(everything):
        rows = session.execute(
            sa.select(models.Instance.uuid, models.Instance.deleted, models.Instance.host).where(
                models.Instance.uuid.in_(chunk)
            )
        )
        records.update((uuid, (deleted, on)) for uuid, deleted, on in rows)
    # Only a domain that would be a leftover is worth asking about its migrations.
    strays = {
        uuid
        for host, uuids in reported.items()
        for uuid in uuids
        if (record := records.get(uuid)) is not None and not record[0] and record[1] != host
    }
    moving = _moving_hosts(session, sorted(strays)) if strays else set()
    found = {}
    for host, uuids in reported.items():
        soft_deleted, unknown, elsewhere = [], [], []
        for uuid in uuids:
            record = records.get(uuid)
            if record is None:
                unknown.append(uuid)
            elif record[0]:
                soft_deleted.append(uuid)
            elif record[1] != host and (uuid, host) not in moving:
                # (A host of a resize under way rightly holds a copy until it ends.)
                elsewhere.append(uuid)
        found[host] = UnrecordedDomains(
            soft_deleted=soft_deleted, unknown=unknown, elsewhere=elsewhere
        )
    return found


def _moving_hosts(session: orm.Session, uuids: list[str]) -> set[tuple[str, str]]:
    """(instance uuid, host) of each host of the unfinished migrations of ``uuids``."""
    found: set[tuple[str, str]] = set()
    migration = models.Migration
    for chunk in _chunks(sorted(uuids)):
        rows = session.execute(
            sa.select(migration.instance_uuid, migration.source_compute, migration.dest_compute)
            # (An evacuation done is not: the guest its source holds is a leftover.)
            .where(
                migration.instance_uuid.in_(chunk),
                migration.status.not_in(moves.NOT_IN_PROGRESS),
            )
            .where(models.live(migration))
        )
        for uuid, source, dest in rows:
            found.update((uuid, host) for host in (source, dest) if host)
    return found


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
