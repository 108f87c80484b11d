"""Resize and moves: the ``migrations`` table, the hypervisor's migration URI, and the resize
confirmation last acted on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

- ``migrations`` (Nova's): one row per resize or move of an instance, its hosts, flavors and
  status. While one is under way it is the consumer of the instance's allocations on the
  source host.
- ``compute_nodes.migration_uri``: how other hosts reach this host's hypervisor.
- ``instances.last_resize_confirm``: the ``spec.confirmResize.requestedAt`` stamp last acted
  on.

New columns are nullable, so code of 0003 keeps working against the upgraded schema while
replicas roll. Written by hand from kubenova.db.models; an integration test compares the two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _datetime() -> sa.types.TypeEngine[dt.datetime]:
    # Naive UTC with microseconds (models.UTCDateTime).
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("updated_at", _datetime(), nullable=True),
        sa.Column("deleted_at", _datetime(), nullable=True),
        sa.Column("deleted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("migration_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("source_compute", sa.String(255), nullable=False),
        sa.Column("source_node", sa.String(255), nullable=True),
        sa.Column("dest_compute", sa.String(255), nullable=True),
        sa.Column("dest_node", sa.String(255), nullable=True),
        sa.Column("old_flavor", sa.JSON(), nullable=False),
        sa.Column("new_flavor", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("power_on", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("finished_at", _datetime(), nullable=True),
        sa.Column("message", sa.String(1024), nullable=True),
        sa.Column("object_uid", sa.String(36), nullable=True),
        sa.Column("object_name", sa.String(255), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_uuid"],
            ["instances.uuid"],
            name="fk_migrations_instance_uuid_instances",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_migrations"),
        sa.UniqueConstraint("uuid", name="uniq_migrations0uuid"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_migrations_instance_uuid_status", "migrations", ["instance_uuid", "status"])
    op.add_column("compute_nodes", sa.Column("migration_uri", sa.String(1024), nullable=True))
    op.add_column("instances", sa.Column("last_resize_confirm", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("instances", "last_resize_confirm")
    op.drop_column("compute_nodes", "migration_uri")
    # Dropping the table drops its indexes; MariaDB refuses to drop this one alone while the
    # foreign key on instance_uuid needs it.
    op.drop_table("migrations")
