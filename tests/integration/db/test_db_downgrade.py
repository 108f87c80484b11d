"""Every revision's downgrade runs on MariaDB: head down to the first revision, and up again."""

from __future__ import annotations

import pytest

from kubenova.db import migration
from tests.integration.db.helpers import downgrade

pytestmark = pytest.mark.integration


def test_head_downgrades_to_0001_and_upgrades_again(empty_db_url):
    migration.db_sync(empty_db_url, "head")
    downgrade(empty_db_url, "0001")
    assert migration.db_version(empty_db_url) == "0001"
    assert migration.db_sync(empty_db_url, "head") == migration.head_revision()
