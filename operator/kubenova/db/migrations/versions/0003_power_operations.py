"""Day-2 operations: the reboot request last acted on, the generation an operation under way
applies, and why the spec is not applied.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Adds to ``instances``:

- ``last_reboot_request``: the ``spec.reboot.requestedAt`` stamp the conductor last acted on,
  so a stamp is acted on once however often it is seen;
- ``task_generation``: the ``metadata.generation`` whose spec the operation under way
  applies, observed once it fails, so a failed operation is not tried again until the spec
  changes;
- ``sync_reason`` / ``sync_message``: why the spec at ``generation`` is not applied (an
  operation refused in the instance's state, one its host failed, or a guest that powered
  itself off); NULL when it is applied.

All nullable, so code of 0002 keeps working against the upgraded schema while replicas roll.

Written by hand from kubenova.db.models; an integration test compares the two after an
upgrade so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANCE_COLUMNS = ("last_reboot_request", "task_generation", "sync_reason", "sync_message")


def upgrade() -> None:
    op.add_column("instances", sa.Column("last_reboot_request", sa.String(64), nullable=True))
    op.add_column("instances", sa.Column("task_generation", sa.Integer(), nullable=True))
    op.add_column("instances", sa.Column("sync_reason", sa.String(64), nullable=True))
    op.add_column("instances", sa.Column("sync_message", sa.String(1024), nullable=True))


def downgrade() -> None:
    for column in reversed(INSTANCE_COLUMNS):
        op.drop_column("instances", column)
