"""Fixtures shared by the conductor tests: the recording fakes, a conductor over them, and a
record of the SQL statements sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor.service import Conductor
from kubenova.db import engine as db_engine
from tests.integration.conductor.fakes import make_conductor
from tests.support import RecordingCaster, RecordingKube


@pytest.fixture
def kube() -> RecordingKube:
    return RecordingKube()


@pytest.fixture
def caster() -> RecordingCaster:
    return RecordingCaster()


@pytest.fixture
def conductor(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, caster: RecordingCaster
) -> Conductor:
    return make_conductor(db_session_factory, kube, caster)


@pytest.fixture
def statements(db_session_factory: db_engine.SessionFactory) -> Iterator[list[str]]:
    """The first word of every SQL statement the test's engine sends."""
    engine = db_session_factory.kw["bind"]
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement.lstrip().split(None, 1)[0].upper())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
