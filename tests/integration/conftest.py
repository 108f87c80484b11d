"""Database fixtures for integration tests: a throwaway ``nova_test_<random>`` database.

The server is the one of ``KUBENOVA_DB_URL`` (hack/lib/env.sh), else the local stack's
(tests/localstack.py); MariaDB is started by hack/services.sh. Its ``kubenova`` user may create
and drop databases named ``nova_test_*``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from kubenova.db import engine as db_engine
from kubenova.db import migration
from tests import localstack


def _server_url() -> sa.URL:
    return sa.make_url(localstack.db_url())


@pytest.fixture
def empty_db_url() -> Iterator[str]:
    """The URL of a new, empty database (no tables); dropped after the test."""
    server = _server_url()
    name = f"nova_test_{secrets.token_hex(6)}"
    # Connect without a default database: the user may lack rights on the one in the URL.
    admin = sa.create_engine(server.set(database=None), poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"integration tests need MariaDB at {server.render_as_string(hide_password=True)} "
            f"(start it with hack/services.sh): {exc.orig}",
            pytrace=False,
        )
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """The URL of a new database synced to the head revision; dropped after the test."""
    migration.db_sync(empty_db_url)
    return empty_db_url


@pytest.fixture
def db_session_factory(db_url: str) -> Iterator[db_engine.SessionFactory]:
    """A session factory on the :func:`db_url` database (engine disposed after the test)."""
    engine = db_engine.create_engine(db_url)
    try:
        yield db_engine.make_session_factory(engine)
    finally:
        engine.dispose()
