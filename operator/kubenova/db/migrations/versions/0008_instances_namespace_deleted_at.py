"""An index to find a namespace's instances deleted since a moment.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Adds ``ix_instances_namespace_deleted_at`` on ``instances (namespace, deleted_at)``: the EC2
API shows the instances terminated within the last hour, and deleted rows are kept for good,
so without it every DescribeInstances would read all of a namespace's rows ever written. An
index only: code of the previous revision works against the upgraded schema unchanged.

Written by hand from kubenova.db.models; an integration test compares the two after an
upgrade so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_instances_namespace_deleted_at", "instances", ["namespace", "deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_instances_namespace_deleted_at", table_name="instances")
