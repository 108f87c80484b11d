"""Where the console proxy reaches a host's consoles.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Adds ``compute_nodes.console_address``: the address the console proxy and the aggregated API
server connect to for this host's VNC, SPICE and serial consoles, as its agent reports it
(``KUBENOVA_CONSOLE_ADDRESS``, by default the address its guests' consoles listen on; Nova's
``vncserver_proxyclient_address``). NULL: the host's name is the address, as before. Nullable,
so code of the previous revision keeps working against the upgraded schema while replicas roll.

Written by hand from kubenova.db.models; an integration test compares the two after an
upgrade so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("compute_nodes", sa.Column("console_address", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("compute_nodes", "console_address")
