"""Evacuation through an InstanceMigration of type Evacuate, on a real database with simulated
hosts: refused while the host is up; rebuilt from its image on the scheduler's pick or the
host asked for, with the source held by the migration until that host returns; the server
group holds; the returning source is told to drop the guest, its reports change nothing, and
its claim is freed once the guest is gone; a failed build ends in Error on the source."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor.instance_migrations import MigrationRequest
from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.rpc import compute_rpcapi, payloads
from kubenova.scheduler.host_manager import HostManager, load_host_states
from tests.integration.conductor import builds
from tests.integration.conductor.fakes import (
    FakeMigrationObjects,
    built_report,
    instance_name,
    migration_of,
    node_report,
    running_instance,
    vcpus_used,
)
from tests.integration.db.helpers import allocations_of
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration


@pytest.fixture
def objects(kube: RecordingKube) -> FakeMigrationObjects:
    return FakeMigrationObjects(kube)


def _conductor(
    session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    objects: FakeMigrationObjects,
) -> Conductor:
    """A conductor whose scheduler reads the hosts afresh (a host gone down shows at once)."""
    return Conductor.build(
        OperatorSettings(),
        session_factory,
        kube,  # type: ignore[arg-type]
        compute_rpcapi.ComputeAPI(caster),
        migration_objects=objects,
        host_manager=HostManager(lambda: load_host_states(session_factory), refresh_s=0.0),
    )


@pytest.fixture
def conductor(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    objects: FakeMigrationObjects,
) -> Iterator[Conductor]:
    conductor = _conductor(db_session_factory, kube, caster, objects)
    # No migration URI: an evacuation copies nothing, so it needs none.
    builds.register(conductor, "h1", "h2", "h3")
    yield conductor
    # Its status writer's thread, started by a status held back, must not outlive the test.
    conductor.projector.stop()


@pytest.fixture
def uuid(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> str:
    """An instance running on h1; its object carries its uid."""
    instance = running_instance(db_session_factory, kube)
    kube.instances[(NAMESPACE, instance_name(instance))]["metadata"]["uid"] = instance
    return instance


def _host_down(session_factory: db_engine.SessionFactory, host: str) -> None:
    """``host``'s agent has been silent for an hour: down, by its heartbeat's age."""
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.Service)
            .where(models.Service.host == host)
            .values(last_seen_up=models.utcnow() - dt.timedelta(hours=1))
        )


def _evacuate(uuid: str, name: str = "evacuate", **over: Any) -> MigrationRequest:
    return MigrationRequest(
        namespace=NAMESPACE, name=name, uid=f"{name}-uid-0000-0000-000000000000"[:36],
        generation=1, instance=instance_name(uuid), type="Evacuate", **over,
    )  # fmt: skip


def _holds(session_factory: db_engine.SessionFactory, consumer: str) -> bool:
    with db_engine.transaction(session_factory) as session:
        return bool(allocations_of(session, consumer))


def _build_cast(caster: RecordingCaster) -> str:
    """The host the last build was cast to."""
    (host,) = [c.topic for c in caster.casts if c.method == "build_and_run_instance"][-1:]
    return host.removeprefix("compute.")


def test_an_evacuation_is_refused_while_the_host_is_up_and_changes_nothing(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    caster.casts.clear()

    conductor.migrations.create(_evacuate(uuid))

    status = objects.statuses["evacuate"]
    assert status["phase"] == "Failed"
    assert "its host h1 is up" in status["message"]
    assert caster.casts == []
    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state) == ("h1", "active", None)
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 0}
    with db_engine.transaction(db_session_factory) as session:
        assert session.scalars(sa.select(models.Migration)).all() == []


def test_an_evacuation_rebuilds_on_the_schedulers_pick_and_the_returning_source_is_cleared(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    _host_down(db_session_factory, "h1")

    conductor.migrations.create(_evacuate(uuid))

    dest = _build_cast(caster)
    assert dest in ("h2", "h3")
    assert caster.casts[-1].args["instance"]["uuid"] == uuid
    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.task_state) == (dest, "rebuild_spawning")
    migration = migration_of(db_session_factory, uuid)
    assert (migration.migration_type, migration.source_compute) == ("evacuation", "h1")
    # The migration holds the source, the instance its destination.
    other = ({"h2", "h3"} - {dest}).pop()
    assert vcpus_used(db_session_factory) == {"h1": 1, dest: 1, other: 0}
    assert _holds(db_session_factory, migration.uuid)
    assert objects.statuses["evacuate"]["phase"] == "Running"

    conductor.instances.instance_update(built_report(uuid, dest))

    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state, record.power_state) == (
        dest, "active", None, "running",
    )  # fmt: skip
    assert migration_of(db_session_factory, uuid).status == "done"
    assert vcpus_used(db_session_factory)["h1"] == 1  # still held: h1 may run the guest
    status = objects.statuses["evacuate"]
    assert (status["phase"], status["sourceHost"], status["targetHost"]) == (
        "Succeeded",
        "h1",
        dest,
    )
    # The source's durable queue is told to drop the guest when its agent comes back.
    assert caster.sent()[-1] == ("compute.h1", "terminate_instance")
    conductor.history.flush()
    (action,) = [a for a in kube.instance_actions.values() if a["action"] == "evacuate"]
    assert action["result"] == "Success"
    assert [e["event"] for e in action["events"]] == ["compute_rebuild_instance"]

    # h1 comes back still running the old guest; a restarted operator hears it first.
    caster.casts.clear()
    restarted = _conductor(db_session_factory, kube, caster, objects)
    restarted.hypervisors.compute_node_report(node_report("h1", instance_uuids=(uuid,)))
    assert caster.sent() == [("compute.h1", "terminate_instance")]
    assert caster.casts[0].args["instance_uuid"] == uuid
    # The audit counts it a leftover too (its second guard, after two audits agree).
    assert restarted.auditor.audit("h1")["leftoverDomains"] == [uuid]
    # Its reports about the guest change nothing.
    restarted.instances.instance_update(
        built_report(uuid, "h1", vm_state="stopped", power_state="shutdown", addresses=())
    )
    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.power_state) == (dest, "active", "running")
    assert record.addresses == ["192.168.122.20"]
    assert vcpus_used(db_session_factory)["h1"] == 1

    # Once it has dropped the guest, its claim goes.
    restarted.instances.instance_terminated(
        payloads.InstanceTerminated(instance_uuid=uuid, host="h1"), "req-terminate"
    )

    assert migration_of(db_session_factory, uuid).status == "completed"
    assert vcpus_used(db_session_factory) == {"h1": 0, dest: 1, other: 0}
    assert builds.record(db_session_factory, uuid).host == dest


def test_a_heartbeat_without_the_guest_frees_the_sources_claim(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    _host_down(db_session_factory, "h1")
    conductor.migrations.create(_evacuate(uuid, target_host="h3"))
    assert _build_cast(caster) == "h3"
    # Before the build is over the source's claim stays, whatever h1 says.
    conductor.hypervisors.compute_node_report(node_report("h1", instance_uuids=(uuid,)))
    conductor.instances.instance_update(built_report(uuid, "h1", power_state="shutdown"))
    conductor.hypervisors.compute_node_report(node_report("h1"))
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 1}
    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.task_state, record.power_state) == (
        "h3", "rebuild_spawning", "nostate",
    )  # fmt: skip

    conductor.instances.instance_update(built_report(uuid, "h3"))
    conductor.hypervisors.compute_node_report(node_report("h1"))

    assert migration_of(db_session_factory, uuid).status == "completed"
    assert vcpus_used(db_session_factory) == {"h1": 0, "h2": 0, "h3": 1}
    assert objects.statuses["evacuate"]["targetHost"] == "h3"


def test_an_evacuation_keeps_the_server_groups_anti_affinity(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
) -> None:
    builds.add_server_group(kube, "web", "anti-affinity")
    members = {}
    for host in ("h1", "h2"):
        uid = builds.build(conductor, kube, serverGroup="web", forcedHost=host)
        conductor.instances.instance_update(built_report(uid, host))
        kube.instances[(NAMESPACE, builds.object_name(uid))]["metadata"]["uid"] = uid
        members[host] = uid
    _host_down(db_session_factory, "h1")

    conductor.migrations.create(_evacuate(members["h1"]))

    # h2 holds the other member.
    assert _build_cast(caster) == "h3"
    assert builds.record(db_session_factory, members["h1"]).host == "h3"
    # Asked for h2 by name, it is refused as the group says.
    _host_down(db_session_factory, "h2")
    conductor.instances.instance_update(built_report(members["h1"], "h3"))
    conductor.migrations.create(_evacuate(members["h2"], name="second", target_host="h3"))
    assert objects.statuses["second"]["phase"] == "Failed"
    assert "cannot evacuate" in objects.statuses["second"]["message"]
    record = builds.record(db_session_factory, members["h2"])
    assert (record.host, record.task_state) == ("h2", None)
    assert builds.allocated_hosts(db_session_factory, members["h2"]) == ["h2"]


def test_a_stopped_instance_is_stopped_again_on_its_new_host(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, uuid, vm_state="stopped", power_state="shutdown")
    _host_down(db_session_factory, "h1")
    conductor.migrations.create(_evacuate(uuid, target_host="h2"))

    conductor.instances.instance_update(built_report(uuid, "h2"))

    assert caster.sent()[-1] == ("compute.h2", "stop_instance")
    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.task_state) == ("h2", "powering-off")
    assert migration_of(db_session_factory, uuid).status == "done"


def test_a_failed_build_ends_in_error_on_the_source_with_its_claim_back(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    _host_down(db_session_factory, "h1")
    conductor.migrations.create(_evacuate(uuid, target_host="h2"))
    caster.casts.clear()

    conductor.instances.instance_build_failed(builds.failed(uuid, "h2"))

    # Not rescheduled: no build goes anywhere, and h1 is not told to drop its copy.
    assert caster.casts == []
    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state) == ("h1", "error", None)
    assert "disk on fire" in builds.fault(db_session_factory, uuid).message
    migration = migration_of(db_session_factory, uuid)
    assert migration.status == "failed"
    assert vcpus_used(db_session_factory) == {"h1": 1, "h2": 0, "h3": 0}
    assert builds.allocated_hosts(db_session_factory, uuid) == ["h1"]
    assert not _holds(db_session_factory, migration.uuid)
    assert objects.statuses["evacuate"]["phase"] == "Failed"
    # h1 returning later is the instance's host again: its reports count.
    conductor.hypervisors.compute_node_report(node_report("h1", instance_uuids=(uuid,)))
    assert caster.casts == []


def test_deleting_an_evacuated_instance_frees_its_sources_claim(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _host_down(db_session_factory, "h1")
    conductor.migrations.create(_evacuate(uuid, target_host="h2"))
    conductor.instances.instance_update(built_report(uuid, "h2"))
    caster.casts.clear()

    assert conductor.tasks.delete_instance(uuid, "req-delete") is False

    assert sorted(caster.sent()) == [
        ("compute.h1", "terminate_instance"),
        ("compute.h2", "terminate_instance"),
    ]
    conductor.instances.instance_terminated(
        payloads.InstanceTerminated(instance_uuid=uuid, host="h2"), "req-delete"
    )
    assert vcpus_used(db_session_factory) == {"h1": 0, "h2": 0, "h3": 0}
    assert migration_of(db_session_factory, uuid).status in moves.DONE


def test_a_build_that_never_answered_is_cast_again_and_deleting_the_object_undoes_nothing(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _host_down(db_session_factory, "h1")
    request = _evacuate(uuid)
    conductor.migrations.create(request)
    dest = _build_cast(caster)

    # Its source is down: there is nowhere to put the instance back.
    assert conductor.migrations.cancel(request.uid) is False
    # An operator that starts again casts the build under way once more (idempotent).
    caster.casts.clear()
    conductor.stale.recast_all()

    assert [(c.topic, c.method) for c in caster.casts] == [
        (f"compute.{dest}", "build_and_run_instance")
    ]
    record = builds.record(db_session_factory, uuid)
    assert (record.host, record.task_state) == (dest, "rebuild_spawning")

    # Later sweeps, long past the timeout, do not pile more builds into its queue.
    later = models.utcnow() + dt.timedelta(hours=1)
    conductor.stale.finish_stale(later)  # the first sweep of a process casts everything again
    conductor.stale.finish_stale(later)
    conductor.stale.finish_stale(later)
    assert len(caster.casts) == 1
