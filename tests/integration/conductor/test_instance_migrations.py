"""Cold migration through an InstanceMigration, on a real database with simulated hosts: the
scheduler picks another host (or the one asked for), the steps run on both, the move confirms
itself and the object's status follows it (the Instance's Synced condition says migrate);
refusals and a deletion before the guest moved."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from kubenova.conductor.instance_migrations import MigrationRequest
from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import compute_rpcapi
from kubenova.rpc import migration_payloads as mp
from tests.integration.conductor.fakes import (
    FakeMigrationObjects,
    instance_name,
    node_report,
    running_instance,
)
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def objects(kube: RecordingKube) -> FakeMigrationObjects:
    return FakeMigrationObjects(kube)


@pytest.fixture
def conductor(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    objects: FakeMigrationObjects,
) -> Iterator[Conductor]:
    conductor = Conductor.build(
        OperatorSettings(),
        db_session_factory,
        kube,  # type: ignore[arg-type]
        compute_rpcapi.ComputeAPI(caster),
        migration_objects=objects,
    )
    yield conductor
    # Its status writer's thread, started by a status held back, must not outlive the test.
    conductor.projector.stop()


@pytest.fixture
def uuid(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> str:
    """An instance running on h1, with h2 and h3 up; its object carries its uid."""
    for host in ("h1", "h2", "h3"):
        conductor.hypervisors.compute_node_report(
            node_report(host, migration_uri=f"qemu+tcp://{host}/system"), "1.4"
        )
    instance = running_instance(db_session_factory, kube)
    kube.instances[(NAMESPACE, instance_name(instance))]["metadata"]["uid"] = instance
    return instance


def _request(uuid: str, name: str = "move", **over: Any) -> MigrationRequest:
    return MigrationRequest(
        namespace=NAMESPACE, name=name, uid=f"{name}-uid-0000-0000-000000000000"[:36],
        generation=1, instance=instance_name(uuid), **over,
    )  # fmt: skip


def _report(caster: RecordingCaster, uuid: str, host: str, **over: Any) -> tuple[Any, str]:
    cast = caster.casts[-1]
    assert cast.topic == f"compute.{host}", caster.casts
    values: dict[str, Any] = {
        "instance_uuid": uuid, "host": host, "migration_uuid": cast.args["migration"]["uuid"],
        "step": cast.method, "result": "Success", "started_at": T0, "finished_at": T0,
        "vm_state": "active", "power_state": "running",
    }  # fmt: skip
    values.update(over)
    return mp.MigrationStepFinished(**values), cast.request_id


def _record(session_factory: db_engine.SessionFactory, uuid: str) -> models.Instance:
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        return record


def test_a_cold_migration_moves_the_instance_to_the_host_asked_for_and_confirms_itself(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    conductor.migrations.create(_request(uuid, target_host="h3"))

    assert (caster.casts[-1].method, caster.casts[-1].args["migration"]["dest_host"]) == (
        "resize_instance",
        "h3",
    )
    assert objects.statuses["move"]["phase"] == "Running"
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h1", power_state="shutdown"))
    assert caster.casts[-1].method == "finish_resize"
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h3"))
    # No verification for a migration: the source is told to drop its copy at once.
    assert (caster.casts[-1].topic, caster.casts[-1].method) == ("compute.h1", "confirm_resize")
    assert _record(db_session_factory, uuid).host == "h3"
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h1", power_state="nostate"))

    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state) == ("h3", "active", None)
    status = objects.statuses["move"]
    assert (status["phase"], status["sourceHost"], status["targetHost"]) == (
        "Succeeded",
        "h1",
        "h3",
    )
    assert "endTimestamp" in status
    with db_engine.transaction(db_session_factory) as session:
        used = {n.host: n.vcpus_used for n in session.query(models.ComputeNode)}
    assert used == {"h1": 0, "h2": 0, "h3": 1}
    conductor.history.flush()
    (action,) = [a for a in kube.instance_actions.values() if a["action"] == "migrate"]
    assert action["result"] == "Success"
    assert [e["event"] for e in action["events"]] == [
        "compute_resize_instance",
        "compute_finish_resize",
        "compute_confirm_resize",
    ]


def test_the_scheduler_picks_another_host_when_none_is_asked_for(
    caster: RecordingCaster, conductor: Conductor, uuid: str
) -> None:
    conductor.migrations.create(_request(uuid))

    assert caster.casts[-1].args["migration"]["dest_host"] in ("h2", "h3")


def _synced(kube: RecordingKube, uuid: str) -> dict[str, Any]:
    conditions = kube.status_of(instance_name(uuid))["conditions"]
    found: dict[str, Any] = next(c for c in conditions if c["type"] == "Synced")
    return found


def test_the_synced_condition_says_migrate_while_a_cold_migration_runs(
    kube: RecordingKube, caster: RecordingCaster, conductor: Conductor, uuid: str
) -> None:
    conductor.migrations.create(_request(uuid, target_host="h2"))

    assert _synced(kube, uuid)["message"] == "migrate in progress (resize_migrating)"
    # A projection that is not told the move's type (a host's report, a restart) reads it.
    conductor.projector.project(uuid)
    assert _synced(kube, uuid)["message"] == "migrate in progress (resize_migrating)"
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h1", power_state="shutdown"))
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h2"))
    assert _synced(kube, uuid)["message"] == "migrate in progress (resize_confirming)"
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h1", power_state="nostate"))
    assert _synced(kube, uuid)["status"] == "True"


def test_a_migration_deleted_before_the_guest_moved_leaves_it_on_its_source(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    request = _request(uuid, target_host="h2")
    conductor.migrations.create(request)
    assert conductor.migrations.cancel(request.uid) is True

    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h1", power_state="shutdown"))
    assert (caster.casts[-1].topic, caster.casts[-1].method) == ("compute.h2", "revert_resize")
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h2", power_state="nostate"))
    assert (caster.casts[-1].topic, caster.casts[-1].method) == (
        "compute.h1",
        "finish_revert_resize",
    )
    conductor.manager.resizes.step_finished(*_report(caster, uuid, "h1"))

    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state) == ("h1", "active", None)
    assert objects.statuses["move"]["phase"] == "Failed"
    assert "cancelled" in objects.statuses["move"]["message"]
    with db_engine.transaction(db_session_factory) as session:
        used = {n.host: n.vcpus_used for n in session.query(models.ComputeNode)}
    assert used == {"h1": 1, "h2": 0, "h3": 0}


def test_refusals_are_written_into_the_object_and_change_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    objects: FakeMigrationObjects,
    uuid: str,
) -> None:
    caster.casts.clear()
    conductor.migrations.create(_request(uuid, name="nowhere", target_host="h1"))
    assert objects.statuses["nowhere"]["phase"] == "Failed"
    assert "spec.targetHost" in objects.statuses["nowhere"]["message"]

    conductor.migrations.create(
        MigrationRequest(namespace=NAMESPACE, name="ghost", uid="g" * 36, generation=1,
                         instance="missing")
    )  # fmt: skip
    assert "spec.instance" in objects.statuses["ghost"]["message"]

    conductor.migrations.create(_request(uuid, name="unknown", target_host="h9"))
    assert objects.statuses["unknown"]["phase"] == "Failed"
    assert "cannot migrate" in objects.statuses["unknown"]["message"]

    assert caster.casts == []
    record = _record(db_session_factory, uuid)
    assert (record.host, record.task_state) == ("h1", None)
