"""Bring a database schema to a revision (``kubenova-manage db sync``), or report its revision.

Alembic runs with the configuration shipped inside this package, located from this module's
path, so the result does not depend on the working directory. The connection is handed to
Alembic's ``env.py`` directly, so passwords in the URL are never put through configparser's
``%`` interpolation.

Concurrent runs (two operator replicas, a Helm hook retried) are serialized by a MySQL named
lock: MySQL DDL is not transactional, and two upgrades interleaving could leave a half-applied
revision.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic import command
from alembic import util as alembic_util
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from kubenova.db import engine as db_engine

LOG = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
ALEMBIC_INI: Final = MIGRATIONS_DIR / "alembic.ini"

SYNC_LOCK_NAME: Final = "kubenova_db_sync"
SYNC_LOCK_TIMEOUT: Final = 300


class MigrationError(RuntimeError):
    """``db sync`` could not run (lock not obtained, unknown revision...)."""


def alembic_config() -> Config:
    """The in-package Alembic configuration, with ``script_location`` set absolutely."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision the shipped migrations know."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError("no migrations found in " + str(MIGRATIONS_DIR))
    return head


def _engine(url: str | sa.URL) -> sa.Engine:
    # One connection, closed for real at the end: this is a one-off task, not a service.
    return db_engine.create_engine(url, poolclass=sa.pool.NullPool)


def db_sync(url: str | sa.URL, revision: str = "head") -> str | None:
    """Upgrade the database at ``url`` to ``revision`` (default: head); returns the revision
    the database is at afterwards.

    Running it again at the same revision does nothing. Only upgrades: as in Nova, going back
    is done by restoring a backup, not by ``db sync``.
    """
    config = alembic_config()
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            got = conn.scalar(
                sa.text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": SYNC_LOCK_NAME, "timeout": SYNC_LOCK_TIMEOUT},
            )
            # GET_LOCK opens an implicit transaction in SQLAlchemy's eyes; end it so that
            # Alembic's env.py begins its own.
            conn.commit()
            if got != 1:
                raise MigrationError(
                    f"another db sync holds the lock {SYNC_LOCK_NAME!r}; waited "
                    f"{SYNC_LOCK_TIMEOUT} s"
                )
            try:
                config.attributes["connection"] = conn
                try:
                    command.upgrade(config, revision)
                except alembic_util.CommandError as exc:
                    raise MigrationError(str(exc)) from exc
                return _current_revision(conn)
            finally:
                conn.rollback()
                conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": SYNC_LOCK_NAME})
                conn.commit()
    finally:
        engine.dispose()


def _current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def db_version(url: str | sa.URL) -> str | None:
    """The revision the database at ``url`` is at, or None if no migration ever ran there."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return _current_revision(conn)
    finally:
        engine.dispose()
