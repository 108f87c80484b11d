"""``ConductorManager.projection(None, record, ...)``: without a session the projection opens a
transaction of its own only when the database has something to add (whether the record's host
is up, when the caller does not know; the latest fault of a record in Error, when none is
given), and otherwise touches no database at all."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.conductor.manager import ConductorManager
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from tests.integration.conductor.fakes import running_instance
from tests.integration.db.helpers import claim, make_host, make_instance
from tests.support import RecordingKube

pytestmark = pytest.mark.integration

DOWN_TIME_S = OperatorSettings().service_down_time_s


class CountingFactory:
    """Stands in for the conductor's session factory: counts the sessions it opens."""

    def __init__(self, inner: db_engine.SessionFactory) -> None:
        self.inner = inner
        self.opened = 0

    def __call__(self) -> orm.Session:
        self.opened += 1
        return self.inner()


@pytest.fixture
def sessions(conductor: ConductorManager) -> CountingFactory:
    counting = CountingFactory(conductor.session_factory)
    conductor.session_factory = counting  # type: ignore[assignment]
    return counting


def _heartbeat(session_factory: db_engine.SessionFactory, host: str, age_s: float = 0) -> None:
    """Record a heartbeat of ``host``'s agent, ``age_s`` seconds old."""
    with db_engine.transaction(session_factory) as session:
        db_api.service_record_heartbeat(
            session, host, models.AGENT_BINARY, f"compute.{host}", "1.0"
        )
        if age_s:
            session.execute(
                sa.update(models.Service)
                .where(models.Service.host == host)
                .values(last_seen_up=models.utcnow() - dt.timedelta(seconds=age_s))
            )


def _record(session_factory: db_engine.SessionFactory, uuid: str) -> models.Instance:
    """A detached, current copy of the instance's record."""
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        return record


def _set(session_factory: db_engine.SessionFactory, uuid: str, **values: Any) -> None:
    with db_engine.transaction(session_factory) as session:
        db_api.instance_update(session, uuid, **values)


def _building_on_h1(session_factory: db_engine.SessionFactory) -> str:
    """An instance claimed on h1 and spawning; h1 has never sent a heartbeat, so the
    database calls it down."""
    make_host(session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    uuid = make_instance(session_factory)
    assert claim(session_factory, uuid, "h1")
    _set(session_factory, uuid, task_state="spawning")
    return uuid


def _errored_on_h1(session_factory: db_engine.SessionFactory, kube: RecordingKube) -> str:
    """An instance that failed on h1 (up), in Error."""
    make_host(session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    _heartbeat(session_factory, "h1")
    uuid = running_instance(session_factory, kube)
    _set(session_factory, uuid, vm_state="error", task_state=None, power_state="nostate")
    return uuid


def test_a_host_known_up_needs_no_transaction(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
    sessions: CountingFactory,
    statements: list[str],
) -> None:
    record = _record(db_session_factory, _building_on_h1(db_session_factory))
    statements.clear()

    projection = conductor.projection(None, record, host_up=True, current_status={})

    assert sessions.opened == 0
    assert statements == []
    assert kube.calls == {}
    assert projection is not None
    assert projection.uid == record.uuid
    # Building, not Unknown: the caller's word on the host was taken, not the database's.
    assert (projection.status["phase"], projection.status["host"]) == ("Building", "h1")
    assert projection.status["taskState"] == "spawning"


def test_a_record_without_a_host_needs_no_transaction(
    db_session_factory: db_engine.SessionFactory,
    conductor: ConductorManager,
    sessions: CountingFactory,
    statements: list[str],
) -> None:
    record = _record(db_session_factory, make_instance(db_session_factory))
    statements.clear()

    projection = conductor.projection(None, record, current_status={})

    assert (sessions.opened, statements) == (0, [])
    assert projection is not None
    assert (projection.status["phase"], projection.status["host"]) == ("Pending", None)


def test_a_host_not_known_is_asked_of_the_database_in_a_transaction_of_its_own(
    db_session_factory: db_engine.SessionFactory,
    conductor: ConductorManager,
    sessions: CountingFactory,
) -> None:
    record = _record(db_session_factory, _building_on_h1(db_session_factory))

    # No heartbeat on record: down.
    down = conductor.projection(None, record, current_status={})
    assert sessions.opened == 1
    assert down is not None
    assert down.status["phase"] == "Unknown"

    _heartbeat(db_session_factory, "h1")
    up = conductor.projection(None, record, current_status={})
    assert sessions.opened == 2
    assert up is not None
    assert up.status["phase"] == "Building"

    _heartbeat(db_session_factory, "h1", age_s=DOWN_TIME_S + 30)
    stale = conductor.projection(None, record, current_status={})
    assert sessions.opened == 3
    assert stale is not None
    assert stale.status["phase"] == "Unknown"


def test_a_running_instance_on_a_host_gone_down_projects_unknown(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
    sessions: CountingFactory,
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    _heartbeat(db_session_factory, "h1")
    record = _record(db_session_factory, running_instance(db_session_factory, kube))

    running = conductor.projection(None, record, current_status={})
    _heartbeat(db_session_factory, "h1", age_s=DOWN_TIME_S + 30)
    unknown = conductor.projection(None, record, current_status={})

    assert sessions.opened == 2
    assert running is not None
    assert unknown is not None
    assert (running.status["phase"], unknown.status["phase"]) == ("Running", "Unknown")
    assert kube.calls == {}


def test_the_recorded_fault_of_an_error_record_is_read_in_a_transaction_of_its_own(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
    sessions: CountingFactory,
) -> None:
    uuid = _errored_on_h1(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.fault_create(session, uuid, 500, "an older fault", "OlderError", "h1")
        db_api.fault_create(session, uuid, 500, "spawn failed on h1", "BuildAbortException", "h1")
    record = _record(db_session_factory, uuid)

    # The host is known up: only the fault needs the database.
    projection = conductor.projection(None, record, host_up=True, current_status={})

    assert sessions.opened == 1
    assert projection is not None
    assert projection.status["phase"] == "Error"
    assert projection.status["fault"] == {
        "reason": "BuildAbortException",
        "message": "spawn failed on h1",
    }


def test_an_error_record_without_a_recorded_fault_projects_none(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
    sessions: CountingFactory,
) -> None:
    record = _record(db_session_factory, _errored_on_h1(db_session_factory, kube))

    projection = conductor.projection(None, record, host_up=True, current_status={})

    assert sessions.opened == 1
    assert projection is not None
    assert projection.status["phase"] == "Error"
    assert "fault" not in projection.status


def test_a_fault_given_for_an_error_record_needs_no_transaction(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
    sessions: CountingFactory,
    statements: list[str],
) -> None:
    uuid = _errored_on_h1(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.fault_create(session, uuid, 500, "recorded", "Recorded", "h1")
    record = _record(db_session_factory, uuid)
    statements.clear()
    given = {"reason": "Given", "message": "the caller's fault"}

    projection = conductor.projection(None, record, host_up=True, fault=given, current_status={})

    assert (sessions.opened, statements) == (0, [])
    assert projection is not None
    assert projection.status["fault"] == given


def test_with_a_session_given_no_transaction_is_opened(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
    sessions: CountingFactory,
) -> None:
    uuid = _errored_on_h1(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.fault_create(session, uuid, 500, "spawn failed on h1", "BuildAbortException", "h1")
    record = _record(db_session_factory, uuid)

    with db_engine.transaction(db_session_factory) as session:
        projection = conductor.projection(session, record, current_status={})

    assert sessions.opened == 0
    assert projection is not None
    assert projection.status["fault"]["reason"] == "BuildAbortException"
