"""A build that fails on its host goes to the first alternate chosen at scheduling time that
still takes it; when none does, the instance ends in Error with a fault that names each host
tried and why every alternate refused."""

from __future__ import annotations

import pytest

from kubenova.conductor.manager import ConductorManager
from kubenova.config import MessagingSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.rpc import payloads
from tests.integration.conductor.fakes import building_on, instance_name
from tests.integration.db.helpers import make_host, make_instance, node
from tests.support import RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration


def _hosts(session_factory: db_engine.SessionFactory, *hosts: str) -> None:
    for host in hosts:
        make_host(session_factory, host, vcpus=4, memory_mib=1024, local_gb=20)


def _fill_memory(session_factory: db_engine.SessionFactory, host: str) -> None:
    """Another instance takes all of the host's memory after the scheduler chose it."""
    assert db_api.claim_resources(session_factory, make_instance(session_factory), host, 1, 1024, 1)


def _failed(uuid: str, host: str) -> payloads.InstanceBuildFailed:
    return payloads.InstanceBuildFailed(
        instance_uuid=uuid,
        host=host,
        reason="BuildAbortedException",
        message="disk on fire",
        reschedulable=True,
    )


@pytest.fixture
def building(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, caster: RecordingCaster
) -> str:
    """An instance building on h1 with the alternates h2 and h3, h2 since filled up; nothing
    cast yet as far as the test can tell."""
    _hosts(db_session_factory, "h1", "h2", "h3")
    uuid = building_on(db_session_factory, kube, "h1", ["h2", "h3"])
    _fill_memory(db_session_factory, "h2")
    caster.casts.clear()
    return uuid


def test_a_failed_build_goes_to_the_first_alternate_that_takes_it(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: ConductorManager,
    building: str,
) -> None:
    uuid = building
    conductor.instance_build_failed(_failed(uuid, "h1"))

    with db_engine.transaction(db_session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        assert (record.host, record.attempts, record.alternates) == ("h3", 2, [])
    assert caster.sent() == [(MessagingSettings.compute_topic("h3"), "build_and_run_instance")]
    assert node(db_session_factory, "h1").memory_mib_used == 0


def test_when_no_alternate_takes_it_the_fault_says_why_each_refused(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: ConductorManager,
    building: str,
) -> None:
    uuid = building
    with db_engine.transaction(db_session_factory) as session:
        db_api.compute_node_set_disabled(session, "h3", True, "maintenance")

    conductor.instance_build_failed(_failed(uuid, "h1"))

    status = kube.status_of(instance_name(uuid))
    assert status["phase"] == "Error"
    assert status["fault"]["message"] == (
        "build failed on 1 host(s): h1: disk on fire; "
        "no alternate took it (h2: insufficient memory, h3: disabled)"
    )
    assert caster.casts == []
    assert [node(db_session_factory, h).memory_mib_used for h in ("h1", "h3")] == [0, 0]
