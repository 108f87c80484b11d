"""The pooled connections of ``db_engine.create_engine`` on a real MariaDB: no ROLLBACK sent on
returning a connection that is not inside a transaction, one that is gets rolled back, and a
connection the server closed while it idled is replaced before anyone uses it.

Every engine here has one pooled connection (``pool_size=1, max_overflow=0``), so consecutive
checkouts get the same server connection unless it was replaced; the tests check
``CONNECTION_ID()`` to be sure which case they are in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.db import engine as db_engine

pytestmark = pytest.mark.integration


@pytest.fixture
def probe_url(empty_db_url: str) -> str:
    """A database with one InnoDB table ``probe`` holding the row (1, 1)."""
    setup = sa.create_engine(empty_db_url, poolclass=sa.pool.NullPool)
    try:
        with setup.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"))
            conn.execute(sa.text("INSERT INTO probe VALUES (1, 1)"))
    finally:
        setup.dispose()
    return empty_db_url


@pytest.fixture
def pooled(probe_url: str) -> Iterator[sa.Engine]:
    """The engine under test, with a single pooled connection."""
    engine = db_engine.create_engine(probe_url, pool_size=1, max_overflow=0, pool_timeout=5)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def other(probe_url: str) -> Iterator[sa.Engine]:
    """Another client of the same database (a new connection for every use)."""
    engine = sa.create_engine(probe_url, poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _set_value(engine: sa.Engine, value: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE probe SET v = :v WHERE id = 1"), {"v": value})


def _value_and_id(session: orm.Session) -> tuple[int, int]:
    row = session.execute(sa.text("SELECT v, CONNECTION_ID() FROM probe WHERE id = 1")).one()
    return int(row[0]), int(row[1])


def _rollbacks(session: orm.Session) -> int:
    """ROLLBACK statements this server connection has run (MariaDB's session counter)."""
    row = session.execute(sa.text("SHOW SESSION STATUS LIKE 'Com_rollback'")).one()
    return int(row[1])


def _raw_checkout(engine: sa.Engine, *statements: str) -> int:
    """Run ``statements`` on a raw pooled connection and return it without commit or rollback;
    the connection's id."""
    raw = engine.raw_connection()
    try:
        cursor: Any = raw.cursor()
        for statement in statements:
            cursor.execute(statement)
            cursor.fetchall()
        cursor.execute("SELECT CONNECTION_ID()")
        connection_id = int(cursor.fetchone()[0])
        cursor.close()
    finally:
        raw.close()  # back to the pool: only the pool's reset can end the transaction
    return connection_id


def test_a_read_left_uncommitted_does_not_keep_its_snapshot_into_the_next_checkout(
    pooled: sa.Engine, other: sa.Engine
) -> None:
    """The operator's own path: closing the session ends its transaction with one ROLLBACK,
    and the pool's return adds none."""
    factory = db_engine.make_session_factory(pooled)
    with db_engine.transaction(factory) as session:
        before = _rollbacks(session)
    session = factory()
    value, first_id = _value_and_id(session)  # REPEATABLE READ: this starts a snapshot
    session.close()
    assert value == 1

    _set_value(other, 2)

    with factory() as session:
        value, second_id = _value_and_id(session)
        after = _rollbacks(session)
    assert second_id == first_id  # the same pooled connection
    assert value == 2
    assert after - before == 1


def test_a_write_left_open_on_a_returned_connection_is_rolled_back(
    pooled: sa.Engine,
) -> None:
    factory = db_engine.make_session_factory(pooled)
    with factory() as session:
        before = _rollbacks(session)
        session.commit()
    first_id = _raw_checkout(pooled, "UPDATE probe SET v = 99 WHERE id = 1")

    with factory() as session:
        value, second_id = _value_and_id(session)
        after = _rollbacks(session)
    assert second_id == first_id
    assert value == 1  # the uncommitted write did not survive the return to the pool
    assert after - before == 1  # exactly the one ROLLBACK of the return


def test_a_read_left_open_on_a_returned_connection_is_rolled_back(
    pooled: sa.Engine, other: sa.Engine
) -> None:
    first_id = _raw_checkout(pooled, "SELECT v FROM probe WHERE id = 1")
    _set_value(other, 2)
    with db_engine.make_session_factory(pooled)() as session:
        value, second_id = _value_and_id(session)
    assert second_id == first_id
    assert value == 2  # a snapshot left open would still say 1


def test_after_a_commit_the_next_checkout_sees_other_commits_and_no_rollback_was_sent(
    pooled: sa.Engine, other: sa.Engine
) -> None:
    factory = db_engine.make_session_factory(pooled)
    with db_engine.transaction(factory) as session:
        before = _rollbacks(session)
        session.execute(sa.text("UPDATE probe SET v = 5 WHERE id = 1"))
        _, first_id = _value_and_id(session)

    _set_value(other, 6)

    with db_engine.transaction(factory) as session:
        after = _rollbacks(session)
        value, second_id = _value_and_id(session)
    assert second_id == first_id
    assert value == 6
    assert after == before  # the committed connection went back to the pool as it was


def test_sqlalchemys_default_return_would_have_sent_a_rollback(probe_url: str) -> None:
    """The control for the test above: the counter does see a rollback-on-return."""
    engine = db_engine.create_engine(
        probe_url, pool_size=1, max_overflow=0, pool_reset_on_return="rollback"
    )
    try:
        factory = db_engine.make_session_factory(engine)
        with db_engine.transaction(factory) as session:
            before = _rollbacks(session)
        with db_engine.transaction(factory) as session:
            after = _rollbacks(session)
    finally:
        engine.dispose()
    assert after - before == 1


def _kill(engine: sa.Engine, connection_id: int) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text(f"KILL {int(connection_id)}"))


def test_an_idle_connection_the_server_closed_is_replaced_on_checkout(
    pooled: sa.Engine, other: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = db_engine.make_session_factory(pooled)
    with db_engine.transaction(factory) as session:
        _, first_id = _value_and_id(session)
    _kill(other, first_id)
    # Every connection has now idled "long enough" to be pinged before it is handed out.
    monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_S", 0.0)

    with db_engine.transaction(factory) as session:
        value, second_id = _value_and_id(session)
    assert value == 1
    assert second_id != first_id


def test_a_live_idle_connection_passes_its_ping_and_is_kept(
    pooled: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_S", 0.0)
    factory = db_engine.make_session_factory(pooled)
    with db_engine.transaction(factory) as session:
        _, first_id = _value_and_id(session)
    with db_engine.transaction(factory) as session:
        _, second_id = _value_and_id(session)
    assert second_id == first_id


def test_a_connection_returned_moments_ago_is_not_pinged(
    pooled: sa.Engine, other: sa.Engine
) -> None:
    """Within PING_AFTER_IDLE_S no ping guards the checkout: a connection the server closed
    meanwhile fails its first statement (as a disconnect), and the next checkout is fresh."""
    factory = db_engine.make_session_factory(pooled)
    with db_engine.transaction(factory) as session:
        _, first_id = _value_and_id(session)
    _kill(other, first_id)

    with (
        pytest.raises(sa.exc.OperationalError) as caught,
        db_engine.transaction(factory) as session,
    ):
        _value_and_id(session)
    assert caught.value.connection_invalidated

    with db_engine.transaction(factory) as session:
        value, second_id = _value_and_id(session)
    assert value == 1
    assert second_id != first_id
