"""A build that ends in Error records a fault whose code says how it ended (see
kubenova.conductor.faults): 400 for a request the host refused, 409 when the scheduler found no
other host for a reschedule, 500 when the build failed on as many hosts as it may be tried on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubenova.conductor.service import Conductor
from kubenova.db import engine as db_engine
from tests.integration.conductor import builds
from tests.support import RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration


@pytest.fixture
def conductor(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, caster: RecordingCaster
) -> Iterator[Conductor]:
    """A conductor that tries a build on at most two hosts."""
    conductor = builds.conductor_over(db_session_factory, kube, caster, max_attempts=2)
    yield conductor
    conductor.projector.stop()


def _error_code(session_factory: db_engine.SessionFactory, uid: str) -> int:
    assert builds.record(session_factory, uid).vm_state == "error"
    return builds.fault(session_factory, uid).code


def test_a_request_the_host_refused_is_400_with_hosts_and_attempts_left(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2", "h3")
    uid = builds.build(conductor, kube)

    conductor.instances.instance_build_failed(builds.failed(uid, "h1", reschedulable=False))

    assert _error_code(db_session_factory, uid) == 400
    assert builds.cast_hosts(caster) == ["h1"]
    assert builds.fault(db_session_factory, uid).message == (
        "build failed on 1 host(s): h1: disk on fire"
    )


def test_a_reschedule_no_other_host_takes_is_409(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2")
    uid = builds.build(conductor, kube)
    conductor.api.hypervisor_changed("h2", {}, {"disabled": True})

    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))

    assert _error_code(db_session_factory, uid) == 409
    assert builds.cast_hosts(caster) == ["h1"]
    assert builds.fault(db_session_factory, uid).message.endswith(
        "; no other host took it (0/2 hosts: 1 already tried, 1 disabled)"
    )


def test_a_build_that_failed_on_as_many_hosts_as_it_may_be_tried_on_is_500(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2", "h3")
    uid = builds.build(conductor, kube)
    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))

    # h3 is left, but the build had its two attempts.
    conductor.instances.instance_build_failed(builds.failed(uid, "h2", message="no network"))

    assert _error_code(db_session_factory, uid) == 500
    assert builds.cast_hosts(caster) == ["h1", "h2"]
    assert builds.fault(db_session_factory, uid).message == (
        "build failed on 2 host(s): h1: disk on fire; h2: no network"
    )
