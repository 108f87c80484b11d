"""A live record whose Instance object is gone (the cluster was made anew over the database,
say) is deleted by the orphan sweep, as its object's delete would have: after two sweeps in a
row found it without an object, and only once it is older than the grace period."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import payloads
from tests.integration.conductor.fakes import instance_name, node_report, running_instance
from tests.integration.db.helpers import make_host, node
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration


def _age(session_factory: db_engine.SessionFactory, uuid: str, seconds: float) -> None:
    """Make the record ``seconds`` old."""
    created = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.uuid == uuid)
            .values(created_at=created)
        )


def _orphan(
    session_factory: db_engine.SessionFactory, kube: RecordingKube, *, age_s: float = 3600
) -> str:
    """An instance running on h1 whose object is gone."""
    uuid = running_instance(session_factory, kube, "h1")
    del kube.instances[(NAMESPACE, instance_name(uuid))]
    _age(session_factory, uuid, age_s)
    return uuid


def _kept(session_factory: db_engine.SessionFactory, kube: RecordingKube) -> str:
    """An instance running on h1 whose object is there (with its uid)."""
    uuid = running_instance(session_factory, kube, "h1")
    kube.instances[(NAMESPACE, instance_name(uuid))]["metadata"]["uid"] = uuid
    _age(session_factory, uuid, 3600)
    return uuid


def _live(session_factory: db_engine.SessionFactory, uuid: str) -> models.Instance | None:
    with db_engine.transaction(session_factory) as session:
        return db_api.instance_get(session, uuid)


@pytest.fixture
def up(conductor: Conductor) -> None:
    """h1's agent has just reported."""
    conductor.hypervisors.compute_node_report(node_report("h1"))


def test_a_record_without_its_object_is_deleted_through_its_host_at_the_second_sweep(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    up: None,
) -> None:
    orphan = _orphan(db_session_factory, kube)
    kept = _kept(db_session_factory, kube)
    caster.casts.clear()

    assert conductor.orphans.sweep() == []
    assert caster.casts == []

    assert conductor.orphans.sweep() == [orphan]
    assert [(cast.topic, cast.method) for cast in caster.casts] == [
        ("compute.h1", "terminate_instance")
    ]
    assert caster.casts[0].args["instance_uuid"] == orphan
    record = _live(db_session_factory, orphan)
    assert record is not None
    assert record.task_state == "deleting"
    # The host terminates the domain: the claim goes with the record, as for any delete.
    conductor.instances.instance_terminated(
        payloads.InstanceTerminated(instance_uuid=orphan, host="h1"),
        "req-terminate",
    )
    assert _live(db_session_factory, orphan) is None
    assert _live(db_session_factory, kept) is not None
    assert node(db_session_factory, "h1").vcpus_used == 1  # the kept one's


def test_an_orphan_on_a_down_host_is_deleted_at_once_and_its_claim_freed(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    # h1's node is recorded, but no heartbeat of its agent: it is down.
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    orphan = _orphan(db_session_factory, kube)

    conductor.orphans.sweep()
    assert conductor.orphans.sweep() == [orphan]

    assert _live(db_session_factory, orphan) is None
    assert node(db_session_factory, "h1").vcpus_used == 0
    # The terminate waits in the host's durable queue for its agent to come back.
    assert [cast.method for cast in caster.casts] == ["terminate_instance"]


def test_a_record_younger_than_the_grace_period_is_left_alone(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    up: None,
) -> None:
    young = _orphan(db_session_factory, kube, age_s=5)
    caster.casts.clear()

    assert conductor.orphans.sweep() == []
    assert conductor.orphans.sweep() == []

    assert _live(db_session_factory, young) is not None
    assert caster.casts == []


def test_an_object_that_comes_back_between_sweeps_keeps_its_record(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    up: None,
) -> None:
    uuid = _orphan(db_session_factory, kube)
    caster.casts.clear()
    assert conductor.orphans.sweep() == []

    kube.add_instance(instance_name(uuid))
    kube.instances[(NAMESPACE, instance_name(uuid))]["metadata"]["uid"] = uuid
    assert conductor.orphans.sweep() == []
    assert conductor.orphans.sweep() == []

    assert _live(db_session_factory, uuid) is not None
    assert caster.casts == []
