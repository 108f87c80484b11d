"""Console tokens: the ``console_auth_tokens`` table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

- ``console_auth_tokens`` (Nova's): the sha256 of each console token handed out, the console
  it opens (type, host, port, path), the instance it belongs to and when it expires; plus
  ``used_at`` (a token opens one connection) and ``console_session`` (the session that used
  it).

A new table only, so code of 0004 keeps working against the upgraded schema while replicas
roll. Written by hand from kubenova.db.console_models; an integration test compares the two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _datetime() -> sa.types.TypeEngine[dt.datetime]:
    # Naive UTC with microseconds (models.UTCDateTime).
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "console_auth_tokens",
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("updated_at", _datetime(), nullable=True),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("console_type", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls_port", sa.Integer(), nullable=True),
        sa.Column("internal_access_path", sa.String(255), nullable=True),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("expires", _datetime(), nullable=False),
        sa.Column("used_at", _datetime(), nullable=True),
        sa.Column("console_session", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_uuid"],
            ["instances.uuid"],
            name="fk_console_auth_tokens_instance_uuid_instances",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_console_auth_tokens"),
        sa.UniqueConstraint("token_hash", name="uniq_console_auth_tokens0token_hash"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_console_auth_tokens_instance_uuid", "console_auth_tokens", ["instance_uuid"]
    )
    op.create_index("ix_console_auth_tokens_expires", "console_auth_tokens", ["expires"])


def downgrade() -> None:
    # The indexes go with the table: MySQL refuses to drop the instance_uuid index on its own
    # while the foreign key needs it.
    op.drop_table("console_auth_tokens")
