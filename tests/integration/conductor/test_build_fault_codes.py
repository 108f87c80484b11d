"""A build that ends in Error records a fault whose code says how it ended (see
kubenova.conductor.faults): 400 for a request the host refused, 409 when no alternate took a
reschedule, 500 when every host tried failed the build."""

from __future__ import annotations

import pytest

from kubenova.conductor.manager import ConductorManager
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.rpc import payloads
from tests.integration.conductor.fakes import building_on
from tests.integration.db.helpers import make_host, make_instance
from tests.support import RecordingKube

pytestmark = pytest.mark.integration


def _fail(conductor: ConductorManager, uuid: str, *, reschedulable: bool) -> None:
    conductor.instance_build_failed(
        payloads.InstanceBuildFailed(
            instance_uuid=uuid,
            host="h1",
            reason="BuildFailed" if reschedulable else "BuildAborted",
            message="it went wrong",
            reschedulable=reschedulable,
        )
    )


def _fault_code(session_factory: db_engine.SessionFactory, uuid: str) -> int:
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        fault = db_api.fault_get_latest(session, uuid)
    assert record is not None
    assert record.vm_state == "error"
    assert fault is not None
    return fault.code


@pytest.fixture
def hosts(db_session_factory: db_engine.SessionFactory) -> None:
    for host in ("h1", "h2", "h3"):
        make_host(db_session_factory, host, vcpus=4, memory_mib=1024, local_gb=20)


@pytest.mark.usefixtures("hosts")
def test_a_request_the_host_refused_is_400_even_with_alternates_left(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
) -> None:
    uuid = building_on(db_session_factory, kube, "h1", ["h2", "h3"])
    _fail(conductor, uuid, reschedulable=False)
    assert _fault_code(db_session_factory, uuid) == 400


@pytest.mark.usefixtures("hosts")
def test_no_alternate_taking_the_reschedule_is_409(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
) -> None:
    uuid = building_on(db_session_factory, kube, "h1", ["h2", "h3"])
    # Both alternates lose their room after the scheduler chose them.
    for host in ("h2", "h3"):
        filler = make_instance(db_session_factory)
        assert db_api.claim_resources(db_session_factory, filler, host, 1, 1024, 1)

    _fail(conductor, uuid, reschedulable=True)
    assert _fault_code(db_session_factory, uuid) == 409


@pytest.mark.usefixtures("hosts")
@pytest.mark.parametrize(
    ("attempts", "alternates"),
    [(3, ["h2"]), (1, [])],
    ids=["attempts-used-up", "no-alternate-chosen"],
)
def test_a_build_that_failed_on_every_host_tried_is_500(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: ConductorManager,
    attempts: int,
    alternates: list[str],
) -> None:
    uuid = building_on(db_session_factory, kube, "h1", alternates, attempts=attempts)
    _fail(conductor, uuid, reschedulable=True)
    assert _fault_code(db_session_factory, uuid) == 500
