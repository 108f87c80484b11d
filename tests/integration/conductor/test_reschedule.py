"""A build that fails on its host goes down the create's road again: through the scheduler,
with every host it failed on ignored and the request's own constraints (read again from its
Instance object) kept, as attempt number n + 1. When no host passes, the instance ends in
Error with a fault that names each host tried and says why no other host took it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from tests.integration.conductor import builds
from tests.integration.db.helpers import node
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

ZONE = "topology.kubernetes.io/zone"


@pytest.fixture
def conductor(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, caster: RecordingCaster
) -> Iterator[Conductor]:
    conductor = builds.conductor_over(db_session_factory, kube, caster)
    yield conductor
    conductor.projector.stop()


def test_a_failed_build_is_rebuilt_on_another_host_as_its_next_attempt(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2")
    uid = builds.build(conductor, kube)
    assert builds.cast_hosts(caster) == ["h1"]

    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))

    record = builds.record(db_session_factory, uid)
    assert (record.host, record.node, record.attempts) == ("h2", "h2", 2)
    assert (record.vm_state, record.task_state) == ("building", "spawning")
    assert record.tried_hosts == [{"host": "h1", "reason": "disk on fire"}]
    assert builds.cast_hosts(caster) == ["h1", "h2"]
    assert caster.casts[-1].args["instance"]["uuid"] == uid
    assert builds.allocated_hosts(db_session_factory, uid) == ["h2"]
    assert node(db_session_factory, "h1").memory_mib_used == 0


def test_the_rebuild_shows_in_the_instances_status(
    kube: RecordingKube, conductor: Conductor
) -> None:
    builds.register(conductor, "h1", "h2")
    uid = builds.build(conductor, kube)

    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))
    conductor.projector.stop()  # writes the Building status it held back

    status = kube.status_of(builds.object_name(uid))
    assert (status["phase"], status["host"]) == ("Building", "h2")


def test_a_rebuild_never_goes_back_to_a_host_the_build_failed_on(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2", "h3")
    uid = builds.build(conductor, kube)
    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))
    # h1, freed and its failure forgotten, would come first again by name.
    with db_engine.transaction(db_session_factory) as session:
        db_api.compute_node_clear_build_failures(session, "h1")

    conductor.instances.instance_build_failed(builds.failed(uid, "h2", message="no network"))

    record = builds.record(db_session_factory, uid)
    assert (record.host, record.attempts) == ("h3", 3)
    assert record.tried_hosts == [
        {"host": "h1", "reason": "disk on fire"},
        {"host": "h2", "reason": "no network"},
    ]
    assert builds.cast_hosts(caster) == ["h1", "h2", "h3"]


def test_a_host_the_build_failed_on_is_not_taken_even_when_it_is_the_only_one_left(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1")
    uid = builds.build(conductor, kube)

    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))

    assert builds.cast_hosts(caster) == ["h1"]
    assert builds.fault(db_session_factory, uid).message == (
        "build failed on 1 host(s): h1: disk on fire; "
        "no other host took it (0/1 hosts: 1 already tried)"
    )
    assert node(db_session_factory, "h1").memory_mib_used == 0


def test_a_rebuild_keeps_to_the_node_selector_of_the_instances_object(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h3", labels={ZONE: "az1", "disktype": "ssd"})
    builds.register(conductor, "h2")
    uid = builds.build(conductor, kube, nodeSelector={"disktype": "ssd"})

    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))

    # h2 comes before h3 when all else is equal, but does not carry the label.
    assert builds.record(db_session_factory, uid).host == "h3"
    assert builds.cast_hosts(caster) == ["h1", "h3"]


def test_a_rebuild_keeps_the_server_groups_anti_affinity(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2")
    # The smallest host: the weighers put it last.
    builds.register(conductor, "h3", vcpus=2, memory_mib=2048, disk_gib=20)
    builds.add_server_group(kube, "web", "anti-affinity")
    member = builds.build(conductor, kube, serverGroup="web")
    uid = builds.build(conductor, kube, serverGroup="web")
    assert builds.cast_hosts(caster) == ["h1", "h2"]

    conductor.instances.instance_build_failed(builds.failed(uid, "h2"))

    # h1 holds the other member; h2 failed the build.
    assert builds.record(db_session_factory, uid).host == "h3"
    assert builds.record(db_session_factory, member).host == "h1"
    with db_engine.transaction(db_session_factory) as session:
        group = db_api.server_group_get(session, NAMESPACE, "web")
        assert group is not None
        assert db_api.server_group_member_hosts(session, group.id) == {"h1": 1, "h3": 1}


def test_when_no_other_host_passes_the_instance_ends_in_error_saying_why(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2", "h3")
    builds.add_server_group(kube, "web", "anti-affinity")
    builds.build(conductor, kube, serverGroup="web")
    uid = builds.build(conductor, kube, serverGroup="web")
    conductor.api.hypervisor_changed("h3", {ZONE: "az1"}, {"disabled": True})

    conductor.instances.instance_build_failed(builds.failed(uid, "h2"))

    status = kube.status_of(builds.object_name(uid))
    assert status["phase"] == "Error"
    assert status["fault"]["message"] == (
        "build failed on 1 host(s): h2: disk on fire; no other host took it "
        "(0/3 hosts: 1 anti-affinity, 1 already tried, 1 disabled)"
    )
    assert builds.cast_hosts(caster) == ["h1", "h2"]
    record = builds.record(db_session_factory, uid)
    # The reschedule claimed nothing, so it made no attempt.
    assert (record.vm_state, record.host, record.attempts) == ("error", None, 1)
    assert builds.allocated_hosts(db_session_factory, uid) == []


def test_a_rebuild_whose_instance_object_is_gone_ends_in_error(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2")
    uid = builds.build(conductor, kube)
    del kube.instances[(NAMESPACE, builds.object_name(uid))]

    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))

    assert builds.cast_hosts(caster) == ["h1"]
    assert builds.record(db_session_factory, uid).vm_state == "error"
    assert builds.fault(db_session_factory, uid).message.endswith(
        "; no other host took it (its Instance object is gone)"
    )


def test_a_failure_reported_by_a_host_the_instance_is_not_on_changes_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    builds.register(conductor, "h1", "h2")
    uid = builds.build(conductor, kube)

    conductor.instances.instance_build_failed(builds.failed(uid, "h2"))

    record = builds.record(db_session_factory, uid)
    assert (record.host, record.attempts, record.tried_hosts) == ("h1", 1, None)
    assert builds.cast_hosts(caster) == ["h1"]
    assert node(db_session_factory, "h2").failed_builds == 0


def test_a_failure_reported_again_after_its_reschedule_casts_the_rebuild_again(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    # The reschedule claimed h2, but its cast may not have reached the broker: the failure's
    # report was not acknowledged and comes again.
    builds.register(conductor, "h1", "h2")
    uid = builds.build(conductor, kube)
    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))
    del caster.casts[-1]  # the rebuild's cast, lost

    conductor.instances.instance_build_failed(builds.failed(uid, "h1"))

    assert builds.cast_hosts(caster) == ["h1", "h2"]
    assert caster.casts[-1].args["instance"]["uuid"] == uid
    record = builds.record(db_session_factory, uid)
    assert (record.host, record.attempts, record.vm_state) == ("h2", 2, "building")
    assert record.tried_hosts == [{"host": "h1", "reason": "disk on fire"}]
    assert builds.allocated_hosts(db_session_factory, uid) == ["h2"]
