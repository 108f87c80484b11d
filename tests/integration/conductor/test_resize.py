"""Resize through the conductor, on a real database: a new spec.flavor is scheduled and
claimed on both hosts, cast step by step to source and destination, and ends in VerifyResize;
a confirmation frees the source, a revert frees the destination and brings the guest back;
failed steps leave the instance where it was; the claims are right after every step."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubenova.conductor.instance_operations import SpecChange
from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.rpc import migration_payloads as mp
from tests.integration.conductor.fakes import instance_name, node_report, running_instance
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC)
SMALL = {"name": "m1.small", "vcpus": 2, "memory_mib": 1024, "disk_gib": 2, "extra_specs": {}}


@pytest.fixture
def uuid(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> str:
    """An instance of m1.tiny (1 vCPU, 512 MiB, 1 GiB) running on h1; h2 is up too."""
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.4")
    conductor.hypervisors.compute_node_report(
        node_report("h2", migration_uri="qemu+tcp://h2/system"), "1.4"
    )
    instance = running_instance(db_session_factory, kube)
    conductor.projector.project(instance)
    return instance


def _change(uuid: str, generation: int, flavor: dict[str, Any] | None = None, **spec: Any):
    flavor = flavor or {"name": "m1.tiny", "vcpus": 1, "memory_mib": 512, "disk_gib": 1}
    return SpecChange(
        uid=uuid,
        namespace=NAMESPACE,
        name=instance_name(uuid),
        generation=generation,
        spec={"flavor": flavor["name"], "image": "tiny", **spec},
        request_id=f"req-gen-{generation}",
        flavor=flavor,
        image={"name": "tiny"},
    )


def _record(session_factory: db_engine.SessionFactory, uuid: str) -> models.Instance:
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        return record


def _used(session_factory: db_engine.SessionFactory) -> dict[str, tuple[int, int, int]]:
    with db_engine.transaction(session_factory) as session:
        return {
            node.host: (node.vcpus_used, node.memory_mib_used, node.local_gb_used)
            for node in session.query(models.ComputeNode).filter(models.ComputeNode.deleted == 0)
        }


def _step(uuid: str, caster: RecordingCaster, host: str, result: str = "Success", **over: Any):
    """The report of the step last cast to ``host``."""
    cast = caster.casts[-1]
    assert cast.topic == f"compute.{host}", caster.casts
    values: dict[str, Any] = {
        "instance_uuid": uuid,
        "host": host,
        "migration_uuid": cast.args["migration"]["uuid"],
        "step": cast.method,
        "result": result,
        "started_at": T0,
        "finished_at": T0 + dt.timedelta(seconds=1),
        "vm_state": "active",
        "power_state": "running",
    }
    values.update(over)
    return mp.MigrationStepFinished(**values), cast.request_id


def _only_on_h2(conductor: Conductor, db_session_factory: Any, kube: Any, uuid: str) -> None:
    """Make h1 unable to take the new flavor beside the old one, so the scheduler picks h2."""
    conductor.hypervisors.compute_node_report(node_report("h1", memory_mib=1024), "1.4")


def test_a_resize_to_another_host_holds_both_until_confirmed(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    caster.casts.clear()

    conductor.api.apply_spec(_change(uuid, 2, SMALL))

    assert [(c.topic, c.method) for c in caster.casts] == [("compute.h1", "resize_instance")]
    migration = caster.casts[0].args["migration"]
    assert (migration["source_host"], migration["dest_host"], migration["dest_uri"]) == (
        "h1",
        "h2",
        "qemu+tcp://h2/system",
    )
    # Both hosts are held: the old flavor on h1 (by the migration), the new one on h2.
    assert _used(db_session_factory) == {"h1": (1, 512, 1), "h2": (2, 1024, 2)}
    assert _record(db_session_factory, uuid).task_state == "resize_migrating"

    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="shutdown"))
    assert (caster.casts[-1].topic, caster.casts[-1].method) == ("compute.h2", "finish_resize")
    built = caster.casts[-1].args["instance"]
    assert (built["vcpus"], built["memory_mib"], built["disk_gib"]) == (2, 1024, 2)
    assert caster.casts[-1].args["power_on"] is True

    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h2"))
    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state, record.flavor["name"]) == (
        "h2",
        "resized",
        None,
        "m1.small",
    )
    status = kube.status_of(instance_name(uuid))
    assert status["phase"] == "VerifyResize"
    assert (status["resize"]["oldFlavor"], status["resize"]["sourceHost"]) == ("m1.tiny", "h1")
    assert "autoConfirmAt" in status["resize"]
    assert _used(db_session_factory) == {"h1": (1, 512, 1), "h2": (2, 1024, 2)}

    # The watch event of that status: the spec is applied, observed.
    conductor.api.apply_spec(_change(uuid, 2, SMALL))
    assert _record(db_session_factory, uuid).generation == 2

    # Confirmed declaratively: the source is freed.
    conductor.api.apply_spec(_change(uuid, 3, SMALL, confirmResize={"requestedAt": "t1"}))
    assert (caster.casts[-1].topic, caster.casts[-1].method) == ("compute.h1", "confirm_resize")
    conductor.manager.resizes.step_finished(
        *_step(uuid, caster, "h1", power_state="nostate", vm_state="stopped")
    )
    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state) == ("h2", "active", None)
    assert _used(db_session_factory) == {"h1": (0, 0, 0), "h2": (2, 1024, 2)}
    assert kube.status_of(instance_name(uuid))["phase"] == "Running"
    assert kube.status_of(instance_name(uuid)).get("resize") is None
    with db_engine.transaction(db_session_factory) as session:
        assert moves.migration_in_progress(session, uuid) is None
    conductor.history.flush()
    results = {a["action"]: a["result"] for a in kube.instance_actions.values()}
    assert results == {"resize": "Success", "confirmResize": "Success"}


def test_a_revert_brings_the_guest_back_and_frees_the_destination(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    conductor.api.apply_spec(_change(uuid, 2, SMALL))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="shutdown"))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h2"))

    # The old flavor put back while the resize awaits its answer: a revert.
    conductor.api.apply_spec(_change(uuid, 3))
    assert (caster.casts[-1].topic, caster.casts[-1].method) == ("compute.h2", "revert_resize")
    assert _record(db_session_factory, uuid).task_state == "resize_reverting"
    conductor.manager.resizes.step_finished(
        *_step(uuid, caster, "h2", vm_state="stopped", power_state="nostate")
    )
    assert (caster.casts[-1].topic, caster.casts[-1].method) == (
        "compute.h1",
        "finish_revert_resize",
    )
    assert caster.casts[-1].args["instance"]["vcpus"] == 1
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1"))

    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state, record.flavor["name"]) == (
        "h1",
        "active",
        None,
        "m1.tiny",
    )
    assert _used(db_session_factory) == {"h1": (1, 512, 1), "h2": (0, 0, 0)}
    conductor.api.apply_spec(_change(uuid, 3))
    assert _record(db_session_factory, uuid).generation == 3
    conductor.history.flush()
    results = {a["action"]: a["result"] for a in kube.instance_actions.values()}
    assert results == {"resize": "Success", "revertResize": "Success"}


def test_a_resize_on_the_same_host_claims_both_flavors_there(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h2", vcpus=0), "1.4")
    conductor.api.apply_spec(_change(uuid, 2, SMALL))

    args = caster.casts[-1].args["migration"]
    assert (args["source_host"], args["dest_host"], args["dest_uri"]) == ("h1", "h1", None)
    assert _used(db_session_factory)["h1"] == (3, 1536, 3)
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="shutdown"))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1"))
    conductor.api.apply_spec(_change(uuid, 3, SMALL, confirmResize={"requestedAt": "t1"}))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1"))

    assert _used(db_session_factory)["h1"] == (2, 1024, 2)
    assert _record(db_session_factory, uuid).vm_state == "active"


def test_a_source_that_fails_to_power_off_leaves_the_instance_where_it_was(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    conductor.api.apply_spec(_change(uuid, 2, SMALL))
    conductor.manager.resizes.step_finished(
        *_step(uuid, caster, "h1", result="Error", message="disk copy failed")
    )

    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.task_state, record.flavor["name"]) == (
        "h1",
        "active",
        None,
        "m1.tiny",
    )
    assert record.generation == 2  # observed: not tried again until the spec changes
    assert _used(db_session_factory) == {"h1": (1, 512, 1), "h2": (0, 0, 0)}
    synced = next(
        c for c in kube.status_of(instance_name(uuid))["conditions"] if c["type"] == "Synced"
    )
    assert synced["reason"] == "OperationFailed"
    assert "disk copy failed" in synced["message"]


def test_a_guest_that_cannot_start_on_the_destination_comes_back_on_the_source(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    conductor.api.apply_spec(_change(uuid, 2, SMALL))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="shutdown"))
    conductor.manager.resizes.step_finished(
        *_step(uuid, caster, "h2", result="Error", message="qemu refused")
    )
    assert (caster.casts[-1].topic, caster.casts[-1].method) == ("compute.h2", "revert_resize")
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h2", power_state="nostate"))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1"))

    record = _record(db_session_factory, uuid)
    assert (record.host, record.vm_state, record.flavor["name"]) == ("h1", "active", "m1.tiny")
    assert record.sync_reason == "OperationFailed"
    assert "qemu refused" in (record.sync_message or "")
    assert _used(db_session_factory) == {"h1": (1, 512, 1), "h2": (0, 0, 0)}
    conductor.history.flush()
    (resize,) = [a for a in kube.instance_actions.values() if a["action"] == "resize"]
    assert resize["result"] == "Error"


def test_refusals_name_the_field_or_the_state_and_change_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    caster.casts.clear()
    smaller_disk = {**SMALL, "name": "m1.flat", "disk_gib": 0}
    conductor.api.apply_spec(_change(uuid, 2, smaller_disk))
    record = _record(db_session_factory, uuid)
    assert record.sync_reason == "FlavorDiskTooSmall"
    assert "spec.flavor" in (record.sync_message or "")

    conductor.api.apply_spec(_change(uuid, 3, confirmResize={"requestedAt": "t1"}))
    record = _record(db_session_factory, uuid)
    assert record.sync_reason == "InvalidState"
    assert "cannot confirmResize: the instance is active" in (record.sync_message or "")

    # No host has 1 GiB of memory to spare.
    conductor.hypervisors.compute_node_report(node_report("h1", memory_mib=1024), "1.4")
    conductor.hypervisors.compute_node_report(node_report("h2", memory_mib=600), "1.4")
    conductor.api.apply_spec(_change(uuid, 4, SMALL))
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state, record.host) == ("active", None, "h1")
    assert record.sync_reason == "OperationFailed"
    assert "cannot resize to m1.small" in (record.sync_message or "")
    assert caster.casts == []
    assert _used(db_session_factory) == {"h1": (1, 512, 1), "h2": (0, 0, 0)}


def test_a_resize_not_answered_within_the_window_is_confirmed(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    conductor.api.apply_spec(_change(uuid, 2, SMALL))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="shutdown"))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h2"))
    assert conductor.resizes.confirm_due() == 0  # within the window

    with db_engine.transaction(db_session_factory) as session:
        migration = moves.migration_in_progress(session, uuid)
        assert migration is not None
        migration.finished_at = models.utcnow() - dt.timedelta(days=2)
    assert conductor.resizes.confirm_due() == 1

    assert (caster.casts[-1].topic, caster.casts[-1].method) == ("compute.h1", "confirm_resize")
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="nostate"))
    assert _used(db_session_factory) == {"h1": (0, 0, 0), "h2": (2, 1024, 2)}
    conductor.history.flush()
    (confirm,) = [a for a in kube.instance_actions.values() if a["action"] == "confirmResize"]
    assert "not confirmed or reverted within" in confirm["message"]


def test_a_delete_during_verify_resize_frees_both_hosts(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    conductor.api.apply_spec(_change(uuid, 2, SMALL))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="shutdown"))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h2"))
    caster.casts.clear()

    assert conductor.tasks.delete_instance(uuid, "req-delete") is False
    assert sorted((c.topic, c.method) for c in caster.casts) == [
        ("compute.h1", "terminate_instance"),
        ("compute.h2", "terminate_instance"),
    ]
    assert _used(db_session_factory)["h1"] == (0, 0, 0)


def test_a_step_never_answered_is_cast_again_and_an_unclaimed_resize_ended(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    conductor.api.apply_spec(_change(uuid, 2, SMALL))
    conductor.manager.resizes.step_finished(*_step(uuid, caster, "h1", power_state="shutdown"))
    lost = caster.casts[-1]
    caster.casts.clear()

    # An operator that starts again casts the step under way once more.
    conductor.stale.recast_all()
    assert [(c.topic, c.method, c.request_id) for c in caster.casts] == [
        ("compute.h2", "finish_resize", lost.request_id)
    ]
    assert caster.casts[0].args == lost.args

    # A resize whose destination was never claimed (the operator died first) is ended.
    other = running_instance(db_session_factory, kube, "h2")
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, other, task_state="resize_prep", task_generation=2)
        db_api.action_start(session, other, "resize", "req-lost")
    caster.casts.clear()
    conductor.stale.recast_all()
    record = _record(db_session_factory, other)
    assert (record.task_state, record.sync_reason) == (None, "OperationFailed")
    assert "ask for it again" in (record.sync_message or "")


def test_a_host_no_disk_can_reach_is_passed_over(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    _only_on_h2(conductor, db_session_factory, kube, uuid)
    # h2's agent gives no migration URI (an older agent, or one not configured for moves).
    conductor.hypervisors.compute_node_report(node_report("h2", migration_uri=None), "1.4")
    caster.casts.clear()

    conductor.api.apply_spec(_change(uuid, 2, SMALL))

    record = _record(db_session_factory, uuid)
    assert (record.host, record.task_state, record.sync_reason) == ("h1", None, "OperationFailed")
    assert "no migration URI" in (record.sync_message or "")
    assert caster.casts == []
    assert _used(db_session_factory) == {"h1": (1, 512, 1), "h2": (0, 0, 0)}
