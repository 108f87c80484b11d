"""Every revision's downgrade runs on MariaDB: head down to the first revision, and up again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from kubenova.db import migration

pytestmark = pytest.mark.integration


def test_head_downgrades_to_0001_and_upgrades_again(empty_db_url):
    migration.db_sync(empty_db_url, "head")
    engine = sa.create_engine(empty_db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            config = migration.alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
            conn.commit()
    finally:
        engine.dispose()
    assert migration.db_version(empty_db_url) == "0001"
    assert migration.db_sync(empty_db_url, "head") == migration.head_revision()
