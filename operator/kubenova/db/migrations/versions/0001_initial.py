"""Initial schema: services, compute nodes, instances, allocations, actions, events, faults.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

Written by hand from kubenova.db.models; an integration test compares the two after an
upgrade so they cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _datetime() -> sa.types.TypeEngine[dt.datetime]:
    # Naive UTC with microseconds (models.UTCDateTime).
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _medium_text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("updated_at", _datetime(), nullable=True),
    ]


def _soft_delete() -> list[sa.Column[Any]]:
    return [
        sa.Column("deleted_at", _datetime(), nullable=True),
        sa.Column("deleted", sa.Integer(), server_default="0", nullable=False),
    ]


def _counter(name: str, default: str = "0") -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default=default, nullable=False)


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("binary", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=True),
        _counter("report_count"),
        sa.Column("disabled", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("last_seen_up", _datetime(), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        *_timestamps(),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name="pk_services"),
        sa.UniqueConstraint("host", "binary", "deleted", name="uniq_services0host0binary0deleted"),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "compute_nodes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("hypervisor_hostname", sa.String(255), nullable=True),
        _counter("vcpus"),
        _counter("memory_mib"),
        _counter("local_gb"),
        _counter("vcpus_used"),
        _counter("memory_mib_used"),
        _counter("local_gb_used"),
        sa.Column("cpu_allocation_ratio", sa.Double(), server_default="4", nullable=False),
        sa.Column("ram_allocation_ratio", sa.Double(), server_default="1", nullable=False),
        sa.Column("disk_allocation_ratio", sa.Double(), server_default="1", nullable=False),
        _counter("reserved_host_memory_mib"),
        _counter("reserved_host_disk_gib"),
        sa.Column("hypervisor_type", sa.String(255), nullable=True),
        sa.Column("hypervisor_version", sa.String(255), nullable=True),
        sa.Column("libvirt_version", sa.String(255), nullable=True),
        sa.Column("virt_type", sa.String(16), nullable=True),
        sa.Column("cpu_arch", sa.String(32), nullable=True),
        _counter("running_vms"),
        sa.Column("disabled", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=True),
        _counter("generation"),
        *_timestamps(),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name="pk_compute_nodes"),
        sa.UniqueConstraint("uuid", name="uniq_compute_nodes0uuid"),
        sa.UniqueConstraint("host", "deleted", name="uniq_compute_nodes0host0deleted"),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("flavor", sa.JSON(), nullable=False),
        sa.Column("image", sa.JSON(), nullable=False),
        sa.Column("vm_state", sa.String(255), nullable=False),
        sa.Column("task_state", sa.String(255), nullable=True),
        sa.Column("power_state", sa.String(32), nullable=False),
        sa.Column("user_data", _medium_text(), nullable=True),
        sa.Column("ssh_authorized_keys", sa.JSON(), nullable=True),
        sa.Column("addresses", sa.JSON(), nullable=True),
        sa.Column("launched_at", _datetime(), nullable=True),
        sa.Column("terminated_at", _datetime(), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        _counter("generation"),
        *_timestamps(),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.UniqueConstraint("uuid", name="uniq_instances0uuid"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_instances_host_deleted", "instances", ["host", "deleted"])
    op.create_index("ix_instances_namespace_name", "instances", ["namespace", "name"])

    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("compute_node_id", sa.Integer(), nullable=False),
        sa.Column("resource_class", sa.String(32), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_allocations"),
        sa.ForeignKeyConstraint(
            ["compute_node_id"],
            ["compute_nodes.id"],
            name="fk_allocations_compute_node_id_compute_nodes",
        ),
        sa.UniqueConstraint(
            "instance_uuid",
            "resource_class",
            name="uniq_allocations0instance_uuid0resource_class",
        ),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_allocations_compute_node_id_resource_class",
        "allocations",
        ["compute_node_id", "resource_class"],
    )

    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("start_time", _datetime(), nullable=True),
        sa.Column("finish_time", _datetime(), nullable=True),
        sa.Column("message", sa.String(255), nullable=True),
        *_timestamps(),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name="pk_instance_actions"),
        sa.ForeignKeyConstraint(
            ["instance_uuid"],
            ["instances.uuid"],
            name="fk_instance_actions_instance_uuid_instances",
        ),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_instance_actions_instance_uuid_request_id",
        "instance_actions",
        ["instance_uuid", "request_id"],
    )

    op.create_table(
        "instance_actions_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(255), nullable=False),
        sa.Column("start_time", _datetime(), nullable=True),
        sa.Column("finish_time", _datetime(), nullable=True),
        sa.Column("result", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        *_timestamps(),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name="pk_instance_actions_events"),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["instance_actions.id"],
            name="fk_instance_actions_events_action_id_instance_actions",
        ),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_instance_actions_events_action_id", "instance_actions_events", ["action_id"]
    )

    op.create_table(
        "instance_faults",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(255), nullable=False),
        sa.Column("details", _medium_text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        *_timestamps(),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name="pk_instance_faults"),
        sa.ForeignKeyConstraint(
            ["instance_uuid"],
            ["instances.uuid"],
            name="fk_instance_faults_instance_uuid_instances",
        ),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_instance_faults_instance_uuid", "instance_faults", ["instance_uuid"])


def downgrade() -> None:
    # Children before parents, for the foreign keys.
    for table in (
        "instance_faults",
        "instance_actions_events",
        "instance_actions",
        "allocations",
        "instances",
        "compute_nodes",
        "services",
    ):
        op.drop_table(table)
