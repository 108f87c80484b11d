"""Revision 0005 adds the console token table and takes it away again, leaving 0004 intact."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kubenova.db import migration
from tests.integration.db.helpers import downgrade

pytestmark = pytest.mark.integration


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0005_adds_console_auth_tokens_and_downgrades_to_0004(empty_db_url):
    migration.db_sync(empty_db_url, "0004")
    at_0004 = _tables(empty_db_url)

    assert migration.db_sync(empty_db_url, "0005") == "0005"
    assert _tables(empty_db_url) == at_0004 | {"console_auth_tokens"}

    downgrade(empty_db_url, "0004")
    assert _tables(empty_db_url) == at_0004
    assert migration.db_version(empty_db_url) == "0004"
