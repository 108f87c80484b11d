"""Scheduling: server groups and their members, build failures, reschedule bookkeeping.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-02

Adds ``server_groups`` and ``server_group_members``; ``compute_nodes.failed_builds``;
``instances.availability_zone``, ``attempts``, ``alternates`` and ``tried_hosts``. Every new
column is nullable or has a server default, so rows written at 0001 stay valid and code of
0001 keeps working against the upgraded schema while replicas roll.

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

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

INSTANCE_COLUMNS = ("availability_zone", "attempts", "alternates", "tried_hosts")


def _datetime() -> sa.types.TypeEngine[dt.datetime]:
    # Naive UTC with microseconds (models.UTCDateTime).
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("updated_at", _datetime(), nullable=True),
    ]


def upgrade() -> None:
    op.add_column(
        "compute_nodes",
        sa.Column("failed_builds", sa.Integer(), server_default="0", nullable=False),
    )

    op.add_column("instances", sa.Column("availability_zone", sa.String(255), nullable=True))
    op.add_column(
        "instances", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("instances", sa.Column("alternates", sa.JSON(), nullable=True))
    op.add_column("instances", sa.Column("tried_hosts", sa.JSON(), nullable=True))

    op.create_table(
        "server_groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("max_server_per_host", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.Column("deleted_at", _datetime(), nullable=True),
        sa.Column("deleted", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_server_groups"),
        sa.UniqueConstraint("uuid", name="uniq_server_groups0uuid"),
        sa.UniqueConstraint(
            "namespace", "name", "deleted", name="uniq_server_groups0namespace0name0deleted"
        ),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "server_group_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_server_group_members"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["server_groups.id"],
            name="fk_server_group_members_group_id_server_groups",
        ),
        sa.ForeignKeyConstraint(
            ["instance_uuid"],
            ["instances.uuid"],
            name="fk_server_group_members_instance_uuid_instances",
        ),
        sa.UniqueConstraint(
            "group_id", "instance_uuid", name="uniq_server_group_members0group_id0instance_uuid"
        ),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_server_group_members_instance_uuid", "server_group_members", ["instance_uuid"]
    )


def downgrade() -> None:
    # Children before parents, for the foreign keys.
    op.drop_table("server_group_members")
    op.drop_table("server_groups")
    for column in INSTANCE_COLUMNS:
        op.drop_column("instances", column)
    op.drop_column("compute_nodes", "failed_builds")
