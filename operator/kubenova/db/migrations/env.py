"""Alembic environment of the ``nova`` database.

The connection comes, in order of preference, from ``config.attributes["connection"]`` (how
:mod:`kubenova.db.migration` runs it), from ``-x url=...`` on the alembic command line, or from
``KUBENOVA_DB_URL``. Offline mode (``--sql``) renders MySQL DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from kubenova.db import engine as db_engine
from kubenova.db import models

# The metadata knows a table once its model's module is imported: models.py holds most of
# them, console_models.py the console tokens.
from kubenova.db import console_models  # noqa: F401  # isort: skip

config = context.config
target_metadata = models.Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or db_engine.url_from_env()


def _configure_and_run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the DDL as SQL text instead of running it."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a connection given by the caller, or on a new one."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = db_engine.create_engine(_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
