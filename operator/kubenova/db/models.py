"""SQLAlchemy models of the ``nova`` database, with Nova's table names and habits.

Habits kept from Nova:

* Soft delete: a deleted row keeps its data, gets ``deleted_at`` and has ``deleted`` set to its
  own ``id`` (live rows have ``deleted = 0``). Unique constraints include ``deleted``, so a host
  can register again after its old record was deleted while two live records still collide.
* Times are UTC. The database holds naive ``DATETIME(6)`` values in UTC; Python code only ever
  sees timezone-aware UTC datetimes (see :class:`UTCDateTime`).
* ``created_at``/``updated_at`` on every table, filled in by the models.

The schema itself is owned by the Alembic migrations in ``kubenova/db/migrations``; these
models must agree with them, which an integration test checks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Unique keys are named by hand in Nova's style (uniq_<table>0<col>0<col>); everything else
# gets a deterministic name from this convention, so migrations can refer to it.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uniq_%(table_name)s0%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Resource classes of a claim, named as Nova's placement names them.
VCPU = "VCPU"
MEMORY_MB = "MEMORY_MB"
DISK_GB = "DISK_GB"
RESOURCE_CLASSES = (VCPU, MEMORY_MB, DISK_GB)

# Service binaries that report heartbeats.
AGENT_BINARY = "kubenova-agent"
OPERATOR_BINARY = "kubenova-operator"


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime (the only kind the models accept)."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A naive UTC ``DATETIME(6)`` in the database, an aware UTC datetime in Python.

    Naive datetimes are refused on the way in: a naive value is ambiguous (local time or UTC?)
    and accepting it is how local times end up stored as UTC.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            # Microseconds keep heartbeats and action events ordered within one second.
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


# User data is capped at 64 KiB raw, ~88 KiB in base64: more than TEXT's 64 KiB.
MediumText: sa.types.TypeEngine[str] = sa.Text().with_variant(
    mysql.MEDIUMTEXT(), "mysql", "mariadb"
)
# DOUBLE rather than MySQL's single-precision FLOAT: a ratio such as 1.1 must multiply exactly
# enough that a capacity check does not flip on rounding.
Ratio: sa.Double[float] = sa.Double()


class Base(DeclarativeBase):
    """Declarative base of every kubenova table."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    """``created_at`` and ``updated_at``, maintained by SQLAlchemy."""

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, onupdate=utcnow)


class SoftDeleteMixin:
    """Nova's soft delete: ``deleted`` is 0 for live rows and the row's id once deleted."""

    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deleted: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")


def table(model: type[Base]) -> sa.Table:
    """The Core table of ``model``, typed as one (the ORM types ``__table__`` as a
    FromClause). Statements built once on it skip the ORM's per-call work."""
    return cast(sa.Table, model.__table__)


def live(model: type[SoftDeleteMixin]) -> sa.ColumnElement[bool]:
    """The WHERE clause that keeps soft-deleted rows of ``model`` out of a query."""
    return model.deleted == 0


class Service(TimestampMixin, SoftDeleteMixin, Base):
    """A running kubenova process that reports heartbeats (Nova's ``services``)."""

    __tablename__ = "services"
    __table_args__ = (
        sa.UniqueConstraint("host", "binary", "deleted", name="uniq_services0host0binary0deleted"),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    binary: Mapped[str] = mapped_column(sa.String(255))
    topic: Mapped[str | None] = mapped_column(sa.String(255))
    report_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default="0")
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(255))
    last_seen_up: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[str | None] = mapped_column(sa.String(64))


class ComputeNode(TimestampMixin, SoftDeleteMixin, Base):
    """A hypervisor host's inventory and usage (Nova's ``compute_nodes`` plus placement's
    resource provider: ``generation`` moves on every inventory or usage change).

    ``*_used`` columns are written only by claims and releases; a host's own reports update
    inventory and facts and never touch them.
    """

    __tablename__ = "compute_nodes"
    __table_args__ = (
        sa.UniqueConstraint("uuid", name="uniq_compute_nodes0uuid"),
        sa.UniqueConstraint("host", "deleted", name="uniq_compute_nodes0host0deleted"),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(sa.String(36))
    host: Mapped[str] = mapped_column(sa.String(255))
    hypervisor_hostname: Mapped[str | None] = mapped_column(sa.String(255))
    vcpus: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    memory_mib: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    local_gb: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    vcpus_used: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    memory_mib_used: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    local_gb_used: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    cpu_allocation_ratio: Mapped[float] = mapped_column(Ratio, default=4.0, server_default="4")
    ram_allocation_ratio: Mapped[float] = mapped_column(Ratio, default=1.0, server_default="1")
    disk_allocation_ratio: Mapped[float] = mapped_column(Ratio, default=1.0, server_default="1")
    # Nova reserves 512 MiB by default; the local stack's hosts are small, so 0 unless set.
    reserved_host_memory_mib: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    reserved_host_disk_gib: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    hypervisor_type: Mapped[str | None] = mapped_column(sa.String(255))
    hypervisor_version: Mapped[str | None] = mapped_column(sa.String(255))
    libvirt_version: Mapped[str | None] = mapped_column(sa.String(255))
    virt_type: Mapped[str | None] = mapped_column(sa.String(16))
    cpu_arch: Mapped[str | None] = mapped_column(sa.String(32))
    running_vms: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default="0")
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(255))
    labels: Mapped[dict[str, str] | None] = mapped_column(sa.JSON)
    generation: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # Builds that failed here since the last one that succeeded: the input of Nova's
    # BuildFailureWeigher. Not inventory, so changing it does not move ``generation``.
    failed_builds: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # The hypervisor's URI as other hosts reach it (the target of a move); None: not a target.
    migration_uri: Mapped[str | None] = mapped_column(sa.String(1024))
    # The address the console proxy reaches this host's consoles at; None: the host's name.
    console_address: Mapped[str | None] = mapped_column(sa.String(255))


class Instance(TimestampMixin, SoftDeleteMixin, Base):
    """One VM, keyed by its Instance object's ``metadata.uid`` (Nova's ``instances``).

    ``uuid`` is unique on its own, not per ``deleted``: a Kubernetes uid is never reused, so a
    deleted record keeps its uuid for good, as in Nova.
    """

    __tablename__ = "instances"
    __table_args__ = (
        sa.UniqueConstraint("uuid", name="uniq_instances0uuid"),
        sa.Index("ix_instances_host_deleted", "host", "deleted"),
        sa.Index("ix_instances_namespace_name", "namespace", "name"),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(sa.String(36))
    name: Mapped[str] = mapped_column(sa.String(255))
    namespace: Mapped[str] = mapped_column(sa.String(255))
    # Nova's tenant; here the namespace, kept as its own column for Nova-shaped queries.
    project_id: Mapped[str] = mapped_column(sa.String(255))
    hostname: Mapped[str | None] = mapped_column(sa.String(255))
    host: Mapped[str | None] = mapped_column(sa.String(255))
    node: Mapped[str | None] = mapped_column(sa.String(255))
    # Snapshots taken at create time, so a later edit of the Flavor or Image does not change
    # what this instance was built from.
    flavor: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    image: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    vm_state: Mapped[str] = mapped_column(sa.String(255))
    task_state: Mapped[str | None] = mapped_column(sa.String(255))
    power_state: Mapped[str] = mapped_column(sa.String(32))
    user_data: Mapped[str | None] = mapped_column(MediumText)
    ssh_authorized_keys: Mapped[list[str] | None] = mapped_column(sa.JSON)
    addresses: Mapped[list[Any] | None] = mapped_column(sa.JSON)
    # Where the running guest's consoles listen on its host, as the host's libvirt handed the
    # ports out when QEMU last started (reported by the host); NULL: no such console runs.
    vnc_port: Mapped[int | None] = mapped_column(sa.Integer)
    spice_port: Mapped[int | None] = mapped_column(sa.Integer)
    spice_tls_port: Mapped[int | None] = mapped_column(sa.Integer)
    launched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    # The Kubernetes metadata.generation last acted on (becomes status.observedGeneration).
    generation: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # Reschedule bookkeeping, as Nova keeps it in the request spec: the zone asked for, how
    # many hosts a build was tried on, the scheduler's alternates (host names, best first)
    # and the hosts tried so far with why they failed ({"host": ..., "reason": ...}).
    availability_zone: Mapped[str | None] = mapped_column(sa.String(255))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    alternates: Mapped[list[str] | None] = mapped_column(sa.JSON)
    tried_hosts: Mapped[list[dict[str, str]] | None] = mapped_column(sa.JSON)
    # The spec.reboot.requestedAt stamp last acted on: a stamp is acted on once.
    last_reboot_request: Mapped[str | None] = mapped_column(sa.String(64))
    # The generation whose spec the operation under way applies (None: not from the spec).
    task_generation: Mapped[int | None] = mapped_column(sa.Integer)
    # Why the spec at ``generation`` is not applied (the Synced condition's reason and
    # message): refused in this state, failed on the host, or the guest powered itself off.
    sync_reason: Mapped[str | None] = mapped_column(sa.String(64))
    sync_message: Mapped[str | None] = mapped_column(sa.String(1024))
    # The spec.confirmResize.requestedAt stamp last acted on (acted on once, as reboots).
    last_resize_confirm: Mapped[str | None] = mapped_column(sa.String(64))


class Allocation(TimestampMixin, Base):
    """Resources one instance holds on one compute node (placement's ``allocations``).

    A claim writes one row per resource class. Allocations are deleted outright when freed
    (as placement does): their history lives in instance actions.
    """

    __tablename__ = "allocations"
    __table_args__ = (
        # One row per class per instance: also the guard against counting a claim twice.
        sa.UniqueConstraint(
            "instance_uuid", "resource_class", name="uniq_allocations0instance_uuid0resource_class"
        ),
        sa.Index(
            "ix_allocations_compute_node_id_resource_class", "compute_node_id", "resource_class"
        ),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36))
    compute_node_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("compute_nodes.id"))
    resource_class: Mapped[str] = mapped_column(sa.String(32))
    used: Mapped[int] = mapped_column(sa.Integer)


class InstanceAction(TimestampMixin, SoftDeleteMixin, Base):
    """A user-visible operation on an instance (create, delete, reboot...), Nova's
    ``instance_actions``; ``message`` becomes ``"Error"`` when one of its events fails."""

    __tablename__ = "instance_actions"
    __table_args__ = (
        sa.Index("ix_instance_actions_instance_uuid_request_id", "instance_uuid", "request_id"),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    action: Mapped[str] = mapped_column(sa.String(255))
    request_id: Mapped[str] = mapped_column(sa.String(255))
    project_id: Mapped[str | None] = mapped_column(sa.String(255))
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finish_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str | None] = mapped_column(sa.String(255))

    events: Mapped[list[InstanceActionEvent]] = relationship(
        back_populates="action", order_by="InstanceActionEvent.id"
    )


class InstanceActionEvent(TimestampMixin, SoftDeleteMixin, Base):
    """One step of an action as a service performed it, e.g. ``compute_build_and_run_instance``
    on a host (Nova's ``instance_actions_events``). ``result`` is ``Success`` or ``Error``."""

    __tablename__ = "instance_actions_events"
    __table_args__ = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("instance_actions.id"), index=True
    )
    event: Mapped[str] = mapped_column(sa.String(255))
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finish_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(sa.String(255))
    host: Mapped[str | None] = mapped_column(sa.String(255))
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    details: Mapped[str | None] = mapped_column(sa.Text)

    action: Mapped[InstanceAction] = relationship(back_populates="events")


class Migration(TimestampMixin, SoftDeleteMixin, Base):
    """One move or resize of an instance (Nova's ``migrations``). While it is under way it is
    also the consumer of the allocations the instance holds on its source host (placement's
    migration-based allocations), so source and destination are both claimed."""

    __tablename__ = "migrations"
    __table_args__ = (
        sa.UniqueConstraint("uuid", name="uniq_migrations0uuid"),
        sa.Index("ix_migrations_instance_uuid_status", "instance_uuid", "status"),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(sa.String(36))
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    migration_type: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(32))
    source_compute: Mapped[str] = mapped_column(sa.String(255))
    source_node: Mapped[str | None] = mapped_column(sa.String(255))
    dest_compute: Mapped[str | None] = mapped_column(sa.String(255))
    dest_node: Mapped[str | None] = mapped_column(sa.String(255))
    old_flavor: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    new_flavor: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    # Whether the guest ran when the move began: it runs again where it ends.
    power_on: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default="1")
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str | None] = mapped_column(sa.String(1024))
    # The InstanceMigration that asked for it (none for a resize), and whether its deletion
    # asked for the move to be undone.
    object_uid: Mapped[str | None] = mapped_column(sa.String(36))
    object_name: Mapped[str | None] = mapped_column(sa.String(255))
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default="0")


class InstanceFault(TimestampMixin, SoftDeleteMixin, Base):
    """Why an instance went to Error (Nova's ``instance_faults``); the newest one is shown."""

    __tablename__ = "instance_faults"
    __table_args__ = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("instances.uuid"), index=True
    )
    code: Mapped[int] = mapped_column(sa.Integer)
    message: Mapped[str] = mapped_column(sa.String(255))
    details: Mapped[str | None] = mapped_column(MediumText)
    host: Mapped[str | None] = mapped_column(sa.String(255))


class ServerGroup(TimestampMixin, SoftDeleteMixin, Base):
    """A namespaced ``ServerGroup`` object's record (Nova's ``instance_groups`` with its
    policy and rules folded in, under the design's name ``server_groups``).

    ``uuid`` is the object's ``metadata.uid`` and unique on its own, as for instances: a uid is
    never reused. (namespace, name) is unique among live groups only, so a group can be
    created again under the name of a deleted one. ``max_server_per_host`` is Nova's
    anti-affinity rule; NULL means 1.
    """

    __tablename__ = "server_groups"
    __table_args__ = (
        sa.UniqueConstraint("uuid", name="uniq_server_groups0uuid"),
        sa.UniqueConstraint(
            "namespace", "name", "deleted", name="uniq_server_groups0namespace0name0deleted"
        ),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(sa.String(36))
    name: Mapped[str] = mapped_column(sa.String(255))
    namespace: Mapped[str] = mapped_column(sa.String(255))
    # Nova's tenant, the namespace (as on instances).
    project_id: Mapped[str] = mapped_column(sa.String(255))
    policy: Mapped[str] = mapped_column(sa.String(255))
    max_server_per_host: Mapped[int | None] = mapped_column(sa.Integer)


class ServerGroupMember(TimestampMixin, Base):
    """An instance's membership of a server group (Nova's ``instance_group_member``).

    Written by the claim that placed the instance, in the claim's transaction. Rows are
    deleted outright (no soft delete) when the instance is deleted or the group is: a
    membership has no history worth keeping, and a leftover row would keep the group's policy
    frozen (see :func:`kubenova.db.server_groups.server_group_upsert`).
    """

    __tablename__ = "server_group_members"
    __table_args__ = (
        sa.UniqueConstraint(
            "group_id", "instance_uuid", name="uniq_server_group_members0group_id0instance_uuid"
        ),
        sa.Index("ix_server_group_members_instance_uuid", "instance_uuid"),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("server_groups.id"))
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
