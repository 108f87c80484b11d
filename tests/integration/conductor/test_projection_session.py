"""``InstanceProjector.project`` opens a database session only when the database has something
to add: the record, when the caller holds none; whether the record's host is up, when the
caller does not say; the latest fault of a record in Error, when none is given. It reads
them in one short transaction of its own, which ends before the apiserver is asked anything,
and touches no database at all when the record, ``host_up`` and ``fault`` are all given."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from tests.integration.conductor.fakes import instance_name, running_instance
from tests.integration.db.helpers import claim, make_host, make_instance
from tests.support import RecordingKube

pytestmark = pytest.mark.integration

DOWN_TIME_S = OperatorSettings().service_down_time_s


class CountingFactory:
    """Stands in for the projector's session factory: counts the sessions it opens and
    keeps them, so a test can tell whether one is still in a transaction."""

    def __init__(self, inner: db_engine.SessionFactory) -> None:
        self.inner = inner
        self.sessions: list[orm.Session] = []

    @property
    def opened(self) -> int:
        return len(self.sessions)

    def in_transaction(self) -> int:
        """How many of the sessions opened are inside a transaction now."""
        return sum(session.in_transaction() for session in self.sessions)

    def __call__(self) -> orm.Session:
        session = self.inner()
        self.sessions.append(session)
        return session


class WatchfulKube(RecordingKube):
    """A RecordingKube that notes, at each Instance read and status patch, how many of the
    projector's sessions were inside a transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.factory: CountingFactory | None = None
        self.transactions_during_calls: list[int] = []

    def _note(self) -> None:
        assert self.factory is not None
        self.transactions_during_calls.append(self.factory.in_transaction())

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._note()
        return super().get_instance(namespace, name)

    def patch_instance_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        self._note()
        return super().patch_instance_status(namespace, name, status)


@pytest.fixture
def kube() -> WatchfulKube:
    return WatchfulKube()


@pytest.fixture
def sessions(conductor: Conductor, kube: WatchfulKube) -> CountingFactory:
    counting = CountingFactory(conductor.projector._session_factory)
    conductor.projector._session_factory = counting  # type: ignore[assignment]
    kube.factory = counting
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


def _written(kube: RecordingKube) -> list[dict[str, Any]]:
    """The statuses patched into Instances so far, in order."""
    return [status for _, status in kube.instance_patches]


def _building_on_h1(session_factory: db_engine.SessionFactory, kube: RecordingKube) -> str:
    """An instance claimed on h1 and spawning, present in Kubernetes; h1 has never sent a
    heartbeat, so the database calls it down."""
    make_host(session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    uuid = make_instance(session_factory)
    assert claim(session_factory, uuid, "h1")
    _set(session_factory, uuid, task_state="spawning")
    kube.add_instance(instance_name(uuid))
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
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
    statements: list[str],
) -> None:
    record = _record(db_session_factory, _building_on_h1(db_session_factory, kube))
    statements.clear()

    conductor.projector.project(record.uuid, record=record, host_up=True, current_status={})

    assert sessions.opened == 0
    assert statements == []
    assert kube.calls == {"patch_instance_status": 1}  # no GET: the caller gave the status
    [status] = _written(kube)
    # Building, not Unknown: the caller's word on the host was taken, not the database's.
    assert (status["phase"], status["host"]) == ("Building", "h1")
    assert status["taskState"] == "spawning"


def test_a_record_without_a_host_needs_no_transaction(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
    statements: list[str],
) -> None:
    uuid = make_instance(db_session_factory)
    kube.add_instance(instance_name(uuid))
    record = _record(db_session_factory, uuid)
    statements.clear()

    conductor.projector.project(uuid, record=record, current_status={})

    assert (sessions.opened, statements) == (0, [])
    [status] = _written(kube)
    assert (status["phase"], status["host"]) == ("Pending", None)


def test_a_host_not_known_is_asked_of_the_database_in_a_transaction_of_its_own(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
) -> None:
    record = _record(db_session_factory, _building_on_h1(db_session_factory, kube))

    # No heartbeat on record: down.
    conductor.projector.project(record.uuid, record=record, current_status={})
    assert sessions.opened == 1

    _heartbeat(db_session_factory, "h1")
    conductor.projector.project(record.uuid, record=record)
    assert sessions.opened == 2

    _heartbeat(db_session_factory, "h1", age_s=DOWN_TIME_S + 30)
    conductor.projector.project(record.uuid, record=record)
    assert sessions.opened == 3

    assert [status["phase"] for status in _written(kube)] == ["Unknown", "Building", "Unknown"]


def test_a_running_instance_on_a_host_gone_down_projects_unknown(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    _heartbeat(db_session_factory, "h1")
    record = _record(db_session_factory, running_instance(db_session_factory, kube))

    conductor.projector.project(record.uuid, record=record, current_status={})
    _heartbeat(db_session_factory, "h1", age_s=DOWN_TIME_S + 30)
    conductor.projector.project(record.uuid, record=record)

    assert sessions.opened == 2
    assert [status["phase"] for status in _written(kube)] == ["Running", "Unknown"]
    assert kube.calls == {"patch_instance_status": 2}


def test_the_recorded_fault_of_an_error_record_is_read_in_a_transaction_of_its_own(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
) -> None:
    uuid = _errored_on_h1(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.fault_create(session, uuid, 500, "an older fault", "OlderError", "h1")
        db_api.fault_create(session, uuid, 500, "spawn failed on h1", "BuildAbortException", "h1")
    record = _record(db_session_factory, uuid)

    # The host is known up: only the fault needs the database.
    conductor.projector.project(uuid, record=record, host_up=True, current_status={})

    assert sessions.opened == 1
    [status] = _written(kube)
    assert status["phase"] == "Error"
    assert status["fault"] == {"reason": "BuildAbortException", "message": "spawn failed on h1"}


def test_an_error_record_without_a_recorded_fault_projects_none(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
) -> None:
    record = _record(db_session_factory, _errored_on_h1(db_session_factory, kube))

    conductor.projector.project(record.uuid, record=record, host_up=True, current_status={})

    assert sessions.opened == 1
    [status] = _written(kube)
    assert status["phase"] == "Error"
    assert "fault" not in status


def test_a_fault_given_for_an_error_record_needs_no_transaction(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
    statements: list[str],
) -> None:
    uuid = _errored_on_h1(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.fault_create(session, uuid, 500, "recorded", "Recorded", "h1")
    record = _record(db_session_factory, uuid)
    statements.clear()
    given = {"reason": "Given", "message": "the caller's fault"}

    conductor.projector.project(uuid, record=record, host_up=True, fault=given, current_status={})

    assert (sessions.opened, statements) == (0, [])
    [status] = _written(kube)
    assert status["fault"] == given


def test_without_a_record_one_transaction_reads_the_record_its_host_and_its_fault(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
) -> None:
    uuid = _errored_on_h1(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.fault_create(session, uuid, 500, "spawn failed on h1", "BuildAbortException", "h1")

    conductor.projector.project(uuid)

    assert sessions.opened == 1
    [status] = _written(kube)
    assert (status["phase"], status["host"]) == ("Error", "h1")
    assert status["fault"]["reason"] == "BuildAbortException"


def test_the_transaction_ends_before_the_apiserver_is_asked(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
) -> None:
    uuid = _building_on_h1(db_session_factory, kube)

    # Nothing given: the record and its host are read, then the object, then it is patched.
    conductor.projector.project(uuid)

    assert sessions.opened == 1
    assert kube.calls == {"get_instance": 1, "patch_instance_status": 1}
    assert kube.transactions_during_calls == [0, 0]


def test_a_record_that_is_gone_is_not_projected(
    db_session_factory: db_engine.SessionFactory,
    kube: WatchfulKube,
    conductor: Conductor,
    sessions: CountingFactory,
) -> None:
    uuid = _building_on_h1(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_soft_delete(session, uuid)

    conductor.projector.project(uuid)

    assert sessions.opened == 1
    assert kube.calls == {}
