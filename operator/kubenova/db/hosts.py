"""Services and compute nodes: reading them, and what administrators and builds change.

What a host's agent reports (heartbeats, inventory) is written by
:mod:`kubenova.db.host_reports`. Every function runs in the caller's transaction (see
:mod:`kubenova.db.api`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from typing import Any, Final, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy import orm

from kubenova import placement
from kubenova.db import models
from kubenova.db.host_reports import ReportedNode

# The size of the disabled_reason column.
MAX_DISABLED_REASON: Final = 255


def service_mark_stopped(session: orm.Session, host: str, binary: str) -> bool:
    """The service said it is stopping: clear ``last_seen_up`` so it is down at once rather
    than ``service_down_time`` later (its next heartbeat sets it again). False when there is
    no such live service."""
    updated = session.execute(
        sa.update(models.Service)
        .where(_live_service(host, binary))
        .values(last_seen_up=None)
        .execution_options(synchronize_session=False)
    )
    return bool(cast(sa.CursorResult[Any], updated).rowcount)


def _live_service(host: str, binary: str) -> sa.ColumnElement[bool]:
    """Selects the live service record of ``binary`` on ``host``."""
    return sa.and_(
        models.Service.host == host,
        models.Service.binary == binary,
        models.live(models.Service),
    )


def service_get(session: orm.Session, host: str, binary: str) -> models.Service | None:
    """The live service of ``binary`` on ``host``, or None (one indexed lookup)."""
    return session.scalars(
        sa.select(models.Service).where(_live_service(host, binary))
    ).one_or_none()


def service_is_up(
    last_seen_up: dt.datetime | None, *, down_time: float = 60.0, now: dt.datetime | None = None
) -> bool:
    """Nova's rule: a service is up if it reported within ``down_time`` seconds (Nova's
    ``service_down_time``, 60 by default)."""
    if last_seen_up is None:
        return False
    now = models.utcnow() if now is None else now
    return (now - last_seen_up).total_seconds() <= down_time


def host_is_up(session: orm.Session, host: str, down_time_s: int) -> bool:
    """Whether ``host``'s agent reported within ``down_time_s`` (Nova's servicegroup rule)."""
    service = service_get(session, host, models.AGENT_BINARY)
    return service is not None and service_is_up(service.last_seen_up, down_time=down_time_s)


def compute_node_get(session: orm.Session, host: str) -> models.ComputeNode | None:
    """The live compute node of ``host``, or None."""
    return session.scalars(
        sa.select(models.ComputeNode).where(
            models.ComputeNode.host == host, models.live(models.ComputeNode)
        )
    ).one_or_none()


def compute_node_record_build_failure(session: orm.Session, host: str) -> int | None:
    """Count one more failed build on ``host``; its new ``failed_builds``, or None for a host
    with no live compute node.

    ``SET failed_builds = failed_builds + 1`` in one statement: concurrent failures on one
    host each count. Lock order: call it after any instance row lock the transaction takes
    (claims lock instances before compute nodes).
    """
    node_t = models.ComputeNode
    updated = session.execute(
        sa.update(node_t)
        .where(node_t.host == host, models.live(node_t))
        .values(failed_builds=node_t.failed_builds + 1)
        .execution_options(synchronize_session=False)
    )
    if cast(sa.CursorResult[Any], updated).rowcount != 1:
        return None
    # The update holds the row lock; a locking read returns what it wrote.
    return session.scalar(
        sa.select(node_t.failed_builds)
        .where(node_t.host == host, models.live(node_t))
        .with_for_update()
    )


_NODES: Final = models.table(models.ComputeNode)
# Built once: a report of every successful build runs it, and building a statement costs
# more CPU than running it.
_CLEAR_BUILD_FAILURES: Final = (
    _NODES.update()
    .where(
        _NODES.c.host == sa.bindparam("b_host"),
        _NODES.c.deleted == 0,
        _NODES.c.failed_builds != 0,
    )
    .values(failed_builds=0)
)


def compute_node_clear_build_failures(session: orm.Session, host: str) -> None:
    """A build succeeded on ``host``: reset ``failed_builds`` to 0 if it is not already, in one
    statement that writes only when there is something to reset (it still takes the row
    lock, as any UPDATE does). Same lock order as :func:`compute_node_record_build_failure`."""
    session.connection().execute(_CLEAR_BUILD_FAILURES, {"b_host": host})


def _locked_live_node(session: orm.Session, host: str) -> models.ComputeNode | None:
    """``host``'s live compute node, its row locked for the transaction and read afresh."""
    return session.scalars(
        sa.select(models.ComputeNode)
        .where(models.ComputeNode.host == host, models.live(models.ComputeNode))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def compute_node_delete(session: orm.Session, host: str) -> bool:
    """Forget a host (Nova's ``compute service delete``): soft-delete its compute node and
    its agent's service. Refused (False, nothing changed) while a live instance is recorded
    on the host or holds allocations there; True also when there was nothing to delete.
    """
    node = _locked_live_node(session, host)
    if node is None:
        return True
    placed = session.scalar(
        sa.select(sa.func.count())
        .select_from(models.Instance)
        .where(models.Instance.host == host, models.live(models.Instance))
    )
    held = session.scalar(
        sa.select(sa.func.count())
        .select_from(models.Allocation)
        .where(models.Allocation.compute_node_id == node.id)
    )
    if placed or held:
        return False
    now = models.utcnow()
    node.deleted, node.deleted_at = node.id, now
    for service in session.scalars(
        sa.select(models.Service).where(models.Service.host == host, models.live(models.Service))
    ):
        service.deleted, service.deleted_at = service.id, now
    session.flush()
    return True


def compute_node_set_disabled(
    session: orm.Session, host: str, disabled: bool, reason: str | None
) -> models.ComputeNode | None:
    """Take ``host`` out of scheduling (``disabled=True``) or put it back; None, and nothing
    done, for a host with no live compute node.

    ``reason`` is kept (cut to 255 characters) while the host is disabled and cleared when it
    is enabled again, as Nova's ``os-services`` enable does. Running claims are not touched:
    disabling only stops the scheduler from choosing the host. One row lock, no other table.
    """
    node = _locked_live_node(session, host)
    if node is None:
        return None
    node.disabled = disabled
    node.disabled_reason = reason[:MAX_DISABLED_REASON] if disabled and reason else None
    session.flush()
    return node


def compute_node_allocation_ratios(
    node: models.ComputeNode | ReportedNode,
) -> placement.AllocationRatios:
    """The ratios claims on ``node`` are held to, as recorded."""
    return placement.AllocationRatios(
        node.cpu_allocation_ratio, node.ram_allocation_ratio, node.disk_allocation_ratio
    )


def compute_node_set_allocation_ratios(
    session: orm.Session, host: str, ratios: placement.AllocationRatios
) -> models.ComputeNode | None:
    """Set how far claims may overcommit ``host`` (Nova's per-node allocation ratios); None,
    and nothing done, for a host with no live compute node.

    Claims compute what is allocatable from these columns in their conditional UPDATE, under
    this row's lock, so every claim after the commit is held to the new ratios. Usage already
    above them stays (Nova allows lowering a ratio below what is placed): the host then takes
    nothing new until usage falls. A change moves ``generation``, as an inventory change
    does in placement. One row lock, no other table.
    """
    node = _locked_live_node(session, host)
    if node is None:
        return None
    if compute_node_allocation_ratios(node) != ratios:
        node.cpu_allocation_ratio = ratios.cpu
        node.ram_allocation_ratio = ratios.memory
        node.disk_allocation_ratio = ratios.disk
        node.generation = node.generation + 1
        session.flush()
    return node


@dataclasses.dataclass(frozen=True)
class HostRecord:
    """A compute node with the heartbeat of its host's agent service (None if it never
    reported). What the scheduler builds its host states from."""

    node: models.ComputeNode
    service: models.Service | None

    @property
    def last_seen_up(self) -> dt.datetime | None:
        """When the host's agent last reported, or None."""
        return self.service.last_seen_up if self.service is not None else None

    @property
    def disabled(self) -> bool:
        """True when either the node or its agent service is disabled."""
        return self.node.disabled or (self.service is not None and self.service.disabled)


def compute_nodes_list(session: orm.Session) -> list[HostRecord]:
    """Every live compute node with its agent's service record, ordered by host."""
    service = orm.aliased(models.Service)
    stmt = (
        sa.select(models.ComputeNode, service)
        .outerjoin(service, _agent_service_of_node(service))
        .where(models.live(models.ComputeNode))
        .order_by(models.ComputeNode.host)
    )
    return [HostRecord(node=row[0], service=row[1]) for row in session.execute(stmt)]


def _agent_service_of_node(service: Any) -> sa.ColumnElement[bool]:
    """Join condition: the live agent service (an alias of Service) of a compute node."""
    return sa.and_(
        service.host == models.ComputeNode.host,
        service.binary == models.AGENT_BINARY,
        service.deleted == 0,
    )


class HostCapacity(NamedTuple):
    """One live compute node as the scheduler weighs it, with its agent's heartbeat."""

    host: str
    vcpus: int
    vcpus_used: int
    memory_mib: int
    memory_mib_used: int
    local_gb: int
    local_gb_used: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    reserved_host_memory_mib: int
    reserved_host_disk_gib: int
    node_disabled: bool
    disabled_reason: str | None
    running_vms: int
    labels: dict[str, str] | None
    cpu_arch: str | None
    hypervisor_type: str | None
    virt_type: str | None
    failed_builds: int
    service_disabled: bool | None
    last_seen_up: dt.datetime | None

    @property
    def disabled(self) -> bool:
        """True when either the node or its agent service is disabled."""
        return self.node_disabled or bool(self.service_disabled)


def _capacities_statement() -> sa.Select[Any]:
    node = _NODES.c
    service = models.table(models.Service).alias("agent_service")
    return (
        sa.select(
            node.host,
            node.vcpus,
            node.vcpus_used,
            node.memory_mib,
            node.memory_mib_used,
            node.local_gb,
            node.local_gb_used,
            node.cpu_allocation_ratio,
            node.ram_allocation_ratio,
            node.disk_allocation_ratio,
            node.reserved_host_memory_mib,
            node.reserved_host_disk_gib,
            node.disabled,
            node.disabled_reason,
            node.running_vms,
            # As text, decoded by _labels_of: a thousand hosts' labels decoded every second
            # cost more than reading them.
            sa.type_coerce(node.labels, sa.Text()).label("labels"),
            node.cpu_arch,
            node.hypervisor_type,
            node.virt_type,
            node.failed_builds,
            service.c.disabled,
            service.c.last_seen_up,
        )
        .select_from(_NODES)
        .outerjoin(service, _agent_service_of_node(service.c))
        .where(node.deleted == 0)
        .order_by(node.host)
    )


_CAPACITIES: Final = _capacities_statement()


@functools.lru_cache(maxsize=4096)
def _labels_of(text: str | None) -> dict[str, str] | None:
    """The labels stored as ``text``, decoded once for every row that stores the same: the
    dict is shared, so callers must not change it."""
    return None if text is None else cast(dict[str, str], json.loads(text))


def _capacity_of(row: sa.Row[Any]) -> HostCapacity:
    capacity = HostCapacity._make(row)
    # The row carries the labels as text (see _capacities_statement).
    return capacity._replace(labels=_labels_of(cast(str | None, capacity.labels)))


def compute_node_capacities(session: orm.Session) -> list[HostCapacity]:
    """What :func:`compute_nodes_list` says of every live node, as plain rows, ordered by host.

    The scheduler reads this every second; selecting columns rather than ORM entities
    (no identity map, no attribute instrumentation) made it several times cheaper, and
    building the statement once (the alias's attribute lookups were half of what was left)
    cheaper again. Rows with the same labels share one (unchangeable) dict of them.
    """
    return [_capacity_of(row) for row in session.connection().execute(_CAPACITIES)]
