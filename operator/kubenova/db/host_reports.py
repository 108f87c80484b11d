"""What a host's agent reports every few seconds: its service heartbeat and its compute node.

Every agent reports every ``heartbeat_interval_s`` (10 s), so with a hundred hosts this is
the operator's most frequent database write. Its statements are therefore Core statements on
the tables, built once at import with bind parameters and run on the session's connection:
building an ORM statement, its cache key and running the unit of work cost the operator
about four times the CPU of running a prebuilt one. Nothing here loads an ORM object (a
caller that wants the service record reads it with :func:`kubenova.db.hosts.service_get`).

Every function runs in the caller's transaction (see :mod:`kubenova.db.api`), on its
connection: ORM changes the caller left pending are not flushed first.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import mysql

from kubenova.db import exceptions, models

_SERVICES: Final = models.table(models.Service)
_NODES: Final = models.table(models.ComputeNode)


def _bind(table: sa.Table, column: str) -> sa.BindParameter[Any]:
    """A bind parameter ``b_<column>`` typed as ``column`` (``b_``: SQLAlchemy keeps the bare
    column names for the parameters it makes itself)."""
    return sa.bindparam(f"b_{column}", type_=table.c[column].type)


# -- services -------------------------------------------------------------------------------

_NEW_SERVICE: Final = mysql.insert(_SERVICES).values(
    host=_bind(_SERVICES, "host"),
    binary=_bind(_SERVICES, "binary"),
    topic=_bind(_SERVICES, "topic"),
    version=_bind(_SERVICES, "version"),
    report_count=1,
    last_seen_up=sa.bindparam("b_now", type_=_SERVICES.c.last_seen_up.type),
    created_at=sa.bindparam("b_now", type_=_SERVICES.c.created_at.type),
    deleted=0,
    disabled=False,
)
_RECORD_HEARTBEAT: Final = _NEW_SERVICE.on_duplicate_key_update(
    report_count=_SERVICES.c.report_count + 1,
    last_seen_up=_NEW_SERVICE.inserted.last_seen_up,
    topic=_NEW_SERVICE.inserted.topic,
    version=_NEW_SERVICE.inserted.version,
    updated_at=_NEW_SERVICE.inserted.created_at,
)


def service_record_heartbeat(
    session: orm.Session, host: str, binary: str, topic: str | None, version: str | None
) -> None:
    """Record a heartbeat: create the service on its first report, then set ``last_seen_up``
    to now and add one to ``report_count``. One statement, nothing read back.

    One ``INSERT ... ON DUPLICATE KEY UPDATE`` on the (host, binary, deleted) key, so two
    replicas recording heartbeats at once cannot both insert, and the count cannot lose an
    increment. ``disabled`` is left as an operator set it.
    """
    session.connection().execute(
        _RECORD_HEARTBEAT,
        {
            "b_host": host,
            "b_binary": binary,
            "b_topic": topic,
            "b_version": version,
            "b_now": models.utcnow(),
        },
    )


# -- compute nodes --------------------------------------------------------------------------


class ReportedNode(NamedTuple):
    """A compute node as a report left it: what the Hypervisor status shows of it, and its
    uuid. A plain row, not an ORM object (building one would cost more than the report's
    statements); ``disabled`` and the usage are as committed when the report ran."""

    uuid: str
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
    hypervisor_type: str | None
    hypervisor_version: str | None
    libvirt_version: str | None
    virt_type: str | None
    cpu_arch: str | None
    running_vms: int
    disabled: bool
    disabled_reason: str | None


# What a report sets as it is, every time. A change of the inventory moves ``generation``;
# the text facts are compared byte for byte (under a case-insensitive collation "QEMU"
# would equal "qemu", and the change would not move ``updated_at``).
_INVENTORY: Final = ("vcpus", "memory_mib", "local_gb")
_TEXT_FACTS: Final = (
    "hypervisor_type",
    "hypervisor_version",
    "libvirt_version",
    "virt_type",
    "cpu_arch",
    "migration_uri",
    "console_address",
)
_AS_REPORTED: Final = (*_INVENTORY, *_TEXT_FACTS, "running_vms")
# A report's hypervisor_hostname, when it gives one (the insert's falls back to the host).
_SET_HYPERVISOR_HOSTNAME: Final = sa.bindparam(
    "b_set_hypervisor_hostname", type_=_NODES.c.hypervisor_hostname.type
)


def _report_node_statement(*, checked_uuid: bool) -> mysql.Insert:
    """``INSERT ... ON DUPLICATE KEY UPDATE`` of a node's report on the (host, deleted) key.

    MySQL applies the update's assignments left to right, each seeing the ones before it:
    ``updated_at`` and ``generation`` come first, so they compare the old values with the
    reported ones (``VALUES(col)``). Their result is the same under MariaDB's
    SIMULTANEOUS_ASSIGNMENT mode, where every assignment sees the old row. ``labels`` and
    ``hypervisor_hostname`` change only when given (NULL keeps them). The ``*_used`` columns,
    ratios, reservations and ``disabled`` are not in the update at all.

    With ``checked_uuid`` the caller names the node's uuid, which has a unique key of its
    own: the duplicate may then be another record (another host's, or a deleted one), and
    every assignment applies only to the live row of this host with this uuid. The row read
    afterwards tells the caller which case it was.
    """
    new = mysql.insert(_NODES).values(
        uuid=_bind(_NODES, "uuid"),
        host=_bind(_NODES, "host"),
        hypervisor_hostname=_bind(_NODES, "hypervisor_hostname"),
        **{column: _bind(_NODES, column) for column in _AS_REPORTED},
        # SQL NULL, not JSON null, when a report gives no labels.
        labels=sa.bindparam("b_labels", type_=sa.JSON(none_as_null=True)),
        generation=_bind(_NODES, "generation"),
        created_at=sa.bindparam("b_now", type_=_NODES.c.created_at.type),
        deleted=0,
    )
    old, reported = _NODES.c, new.inserted

    def same_bytes(a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.cast(a, sa.LargeBinary).is_not_distinct_from(sa.cast(b, sa.LargeBinary))

    unchanged_inventory = sa.and_(*(old[c] == reported[c] for c in _INVENTORY))
    unchanged = sa.and_(
        unchanged_inventory,
        old.running_vms == reported.running_vms,
        *(same_bytes(old[c], reported[c]) for c in _TEXT_FACTS),
        sa.or_(reported.labels.is_(None), same_bytes(old.labels, reported.labels)),
        sa.or_(
            _SET_HYPERVISOR_HOSTNAME.is_(None),
            same_bytes(old.hypervisor_hostname, _SET_HYPERVISOR_HOSTNAME),
        ),
    )
    assignments: list[tuple[str, sa.ColumnElement[Any]]] = [
        ("updated_at", sa.case((unchanged, old.updated_at), else_=reported.created_at)),
        ("generation", sa.case((unchanged_inventory, old.generation), else_=old.generation + 1)),
        *((c, reported[c]) for c in _AS_REPORTED),
        ("labels", sa.func.coalesce(reported.labels, old.labels)),
        (
            "hypervisor_hostname",
            sa.func.coalesce(_SET_HYPERVISOR_HOSTNAME, old.hypervisor_hostname),
        ),
    ]
    if checked_uuid:
        this_node = sa.and_(old.uuid == reported.uuid, old.host == reported.host, old.deleted == 0)
        assignments = [
            (column, sa.case((this_node, value), else_=old[column]))
            for column, value in assignments
        ]
    return new.on_duplicate_key_update(assignments)


_REPORT_NODE: Final = _report_node_statement(checked_uuid=False)
_REPORT_NODE_CHECKED_UUID: Final = _report_node_statement(checked_uuid=True)
# A locking read, as the old row's lock is already held: it returns the latest row even
# when the caller's transaction took its snapshot earlier.
_REPORTED_NODE: Final = (
    sa.select(*(_NODES.c[field] for field in ReportedNode._fields))
    .where(_NODES.c.host == sa.bindparam("b_host"), _NODES.c.deleted == 0)
    .with_for_update()
)


def compute_node_update_from_report(
    session: orm.Session,
    host: str,
    *,
    vcpus: int,
    memory_mib: int,
    local_gb: int,
    hypervisor_type: str | None,
    hypervisor_version: str | None,
    libvirt_version: str | None,
    virt_type: str | None,
    cpu_arch: str | None,
    running_vms: int,
    labels: dict[str, str] | None = None,
    hypervisor_hostname: str | None = None,
    uuid: str | None = None,
    migration_uri: str | None = None,
    console_address: str | None = None,
) -> ReportedNode:
    """Create or update the compute node of ``host`` from what its agent reported; the node
    as it now is.

    Never touches the ``*_used`` columns (claims own them), the allocation ratios, the
    reservations or ``disabled``. ``labels`` are the Hypervisor object's, when the caller has
    just read them; None leaves the recorded labels as they are. ``generation`` moves when
    the inventory (vcpus, memory, disk) changes, so a claim racing an inventory change is
    noticed by anyone comparing it; a new node starts at 1 (0 if it reports nothing).
    ``updated_at`` moves only when the report changed something.

    Two statements: one ``INSERT ... ON DUPLICATE KEY UPDATE`` on the (host, deleted) key,
    which creates or updates the row under its row lock, so concurrent first reports cannot
    create two nodes for one host; then one read of the row, under the lock it already
    holds. With ``uuid``, a uuid that belongs to another record, or a host recorded with
    another uuid, raises :class:`~kubenova.db.exceptions.ComputeNodeConflictError` and
    changes nothing.
    """
    inventory = (vcpus, memory_mib, local_gb)
    conn = session.connection()
    conn.execute(
        _REPORT_NODE if uuid is None else _REPORT_NODE_CHECKED_UUID,
        {
            "b_uuid": uuid or str(uuidlib.uuid4()),
            "b_host": host,
            "b_hypervisor_hostname": hypervisor_hostname or host,
            "b_set_hypervisor_hostname": hypervisor_hostname,
            "b_vcpus": vcpus,
            "b_memory_mib": memory_mib,
            "b_local_gb": local_gb,
            "b_hypervisor_type": hypervisor_type,
            "b_hypervisor_version": hypervisor_version,
            "b_libvirt_version": libvirt_version,
            "b_virt_type": virt_type,
            "b_cpu_arch": cpu_arch,
            "b_migration_uri": migration_uri,
            "b_console_address": console_address,
            "b_running_vms": running_vms,
            "b_labels": dict(labels) if labels is not None else None,
            # As if an empty node had been created and this inventory then set on it.
            "b_generation": 0 if inventory == (0, 0, 0) else 1,
            "b_now": models.utcnow(),
        },
    )
    row = conn.execute(_REPORTED_NODE, {"b_host": host}).one_or_none()
    if row is None:
        raise exceptions.ComputeNodeConflictError(
            f"compute node uuid {uuid} already belongs to another record "
            f"(deleted, or another host's), not to {host}"
        )
    node = ReportedNode._make(row)
    if uuid is not None and node.uuid != uuid:
        raise exceptions.ComputeNodeConflictError(
            f"host {host} is recorded with compute node uuid {node.uuid}, not {uuid}"
        )
    return node
