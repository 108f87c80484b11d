"""Console ports: where each running guest's VNC and SPICE listen on its host.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Adds to ``instances``:

- ``vnc_port``: the VNC port (VeNCrypt/x509 where the host turns TLS on);
- ``spice_port``: SPICE's plain port, NULL where the host serves SPICE over TLS only;
- ``spice_tls_port``: SPICE's TLS port.

Each is what the host's libvirt handed out when QEMU last started, as the host reports it
(``instance_update``, ``instance_operation_finished`` since contract 1.6); NULL while no such
console runs. All nullable, so code of the previous revision keeps working against the
upgraded schema while replicas roll.

Written by hand from kubenova.db.models; an integration test compares the two after an
upgrade so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANCE_COLUMNS = ("vnc_port", "spice_port", "spice_tls_port")


def upgrade() -> None:
    for column in INSTANCE_COLUMNS:
        op.add_column("instances", sa.Column(column, sa.Integer(), nullable=True))


def downgrade() -> None:
    for column in reversed(INSTANCE_COLUMNS):
        op.drop_column("instances", column)
