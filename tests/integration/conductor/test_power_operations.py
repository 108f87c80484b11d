"""Power operations through the conductor, on a real database: the spec's powerState and
reboot request become one checked, compare-and-swapped, recorded operation, cast to the host;
the host's report finishes it; refusals, guests that power themselves off, and operations
whose host never answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor.instance_operations import SpecChange
from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import payloads
from tests.integration.conductor.fakes import instance_name, node_report, running_instance
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def uuid(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> str:
    """An instance running on h1, a host that is up, with its status projected."""
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.3")
    instance = running_instance(db_session_factory, kube)
    conductor.projector.project(instance)
    return instance


def _change(uuid: str, generation: int, **spec: Any) -> SpecChange:
    return SpecChange(
        uid=uuid,
        namespace=NAMESPACE,
        name=instance_name(uuid),
        generation=generation,
        spec={"flavor": "m1.tiny", "image": "tiny", **spec},
        request_id=f"req-gen-{generation}",
    )


def _record(session_factory: db_engine.SessionFactory, uuid: str) -> models.Instance:
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        return record


def _finished(
    uuid: str, operation: str, vm_state: str, power_state: str, **overrides: Any
) -> payloads.InstanceOperationFinished:
    values: dict[str, Any] = {
        "instance_uuid": uuid,
        "host": "h1",
        "operation": operation,
        "result": "Success",
        "started_at": T0,
        "finished_at": T0 + dt.timedelta(seconds=2),
        "vm_state": vm_state,
        "power_state": power_state,
    }
    values.update(overrides)
    return payloads.InstanceOperationFinished(**values)


def _synced(kube: RecordingKube, uuid: str) -> dict[str, Any]:
    conditions = kube.status_of(instance_name(uuid))["conditions"]
    found: dict[str, Any] = next(c for c in conditions if c["type"] == "Synced")
    return found


def _action(kube: RecordingKube, action: str) -> dict[str, Any]:
    conductor_actions = [a for a in kube.instance_actions.values() if a["action"] == action]
    assert len(conductor_actions) == 1, kube.instance_actions
    return conductor_actions[0]


def test_a_stop_is_checked_swapped_recorded_cast_and_finished_by_the_hosts_report(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    caster.casts.clear()
    conductor.api.apply_spec(_change(uuid, 2, powerState="Stopped"))

    assert [(c.topic, c.method) for c in caster.casts] == [("compute.h1", "stop_instance")]
    assert caster.casts[0].args == {
        "instance_uuid": uuid,
        "clean_shutdown": True,
        "shutdown_timeout_s": 60,
    }
    assert caster.casts[0].request_id == "req-gen-2"
    record = _record(db_session_factory, uuid)
    # The generation is observed once the whole spec is applied.
    assert (record.vm_state, record.task_state, record.generation, record.task_generation) == (
        "active",
        "powering-off",
        1,
        2,
    )
    status = kube.status_of(instance_name(uuid))
    assert (status["phase"], status["taskState"], status["observedGeneration"]) == (
        "Running",
        "powering-off",
        1,
    )
    assert _synced(kube, uuid)["reason"] == "InProgress"
    conductor.history.flush()
    assert _action(kube, "stop")["result"] == "InProgress"

    conductor.manager.operations.operation_finished(
        _finished(uuid, "stop", "stopped", "shutdown"), "req-gen-2"
    )

    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state, record.power_state) == (
        "stopped",
        None,
        "shutdown",
    )
    status = kube.status_of(instance_name(uuid))
    assert status["phase"] == "Stopped"
    # That status's watch event brings the object back: nothing more to do, so observed.
    conductor.api.apply_spec(_change(uuid, 2, powerState="Stopped"))
    assert (_synced(kube, uuid)["status"], _synced(kube, uuid)["observedGeneration"]) == (
        "True",
        2,
    )
    assert _record(db_session_factory, uuid).generation == 2
    conductor.history.flush()
    action = _action(kube, "stop")
    assert action["result"] == "Success"
    assert action["finishTime"]
    assert [(e["event"], e["host"], e["result"]) for e in action["events"]] == [
        ("compute_stop_instance", "h1", "Success")
    ]
    assert action["metadata"]["ownerReferences"][0]["uid"] == uuid
    with db_engine.transaction(db_session_factory) as session:
        stored = db_api.action_get(session, uuid, "req-gen-2")
        assert stored is not None
        assert stored.finish_time is not None
        events = db_api.action_events(session, stored.id)
        assert [(e.event, e.result, e.host) for e in events] == [
            ("compute_stop_instance", "Success", "h1")
        ]


def test_an_operation_in_the_wrong_state_is_refused_with_its_reason_and_nothing_changes(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, uuid, vm_state="stopped", power_state="shutdown")
    caster.casts.clear()

    conductor.api.apply_spec(_change(uuid, 2, powerState="Paused"))

    assert caster.casts == []
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state, record.generation) == ("stopped", None, 2)
    synced = _synced(kube, uuid)
    assert (synced["status"], synced["reason"], synced["observedGeneration"]) == (
        "False",
        "InvalidState",
        2,
    )
    assert synced["message"] == (
        "cannot pause: the instance is stopped; pause needs vm_state active"
    )
    assert kube.events == [(instance_name(uuid), "InvalidState", synced["message"], "Warning")]
    with db_engine.transaction(db_session_factory) as session:
        assert db_api.action_get(session, uuid, "req-gen-2") is None


def test_a_change_while_an_operation_runs_waits_and_is_applied_after_it(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    conductor.api.apply_spec(_change(uuid, 2, powerState="Paused"))
    caster.casts.clear()

    # The user changes their mind while the pause runs: nothing is cast, nothing observed.
    conductor.api.apply_spec(_change(uuid, 3, powerState="Stopped"))
    assert caster.casts == []
    assert _record(db_session_factory, uuid).generation == 1

    conductor.manager.operations.operation_finished(
        _finished(uuid, "pause", "paused", "paused"), "req-gen-2"
    )
    assert kube.status_of(instance_name(uuid))["phase"] == "Paused"
    # The status written brings the object back through the api layer's generation check.
    conductor.api.apply_spec(_change(uuid, 3, powerState="Stopped"))
    # Nova refuses to stop a paused instance; the table says so.
    assert caster.casts == []
    assert _synced(kube, uuid)["message"] == (
        "cannot stop: the instance is paused; stop needs vm_state active or error"
    )


def test_two_changes_of_one_generation_swap_the_task_state_in_once(
    kube: RecordingKube, caster: RecordingCaster, conductor: Conductor, uuid: str
) -> None:
    caster.casts.clear()
    conductor.api.apply_spec(_change(uuid, 2, powerState="Suspended"))
    conductor.api.apply_spec(_change(uuid, 2, powerState="Suspended"))
    assert caster.methods() == ["suspend_instance"]


def test_a_reboot_request_is_acted_on_once_per_stamp(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    caster.casts.clear()
    reboot = {"requestedAt": "2026-12-06T10:00:00.000001Z", "type": "Hard"}
    conductor.api.apply_spec(_change(uuid, 2, reboot=reboot))
    assert caster.methods() == ["reboot_instance"]
    assert caster.casts[0].args["reboot_type"] == "HARD"
    assert _record(db_session_factory, uuid).task_state == "rebooting_hard"
    conductor.manager.operations.operation_finished(
        _finished(uuid, "reboot", "active", "running"), "req-gen-2"
    )

    # Another change of the spec keeps the same stamp: no second reboot.
    conductor.api.apply_spec(_change(uuid, 3, reboot=reboot, userData="x"))
    assert caster.methods() == ["reboot_instance"]
    assert _record(db_session_factory, uuid).generation == 3

    conductor.api.apply_spec(_change(uuid, 4, reboot={"requestedAt": "later"}))
    assert caster.methods() == ["reboot_instance", "reboot_instance"]
    assert caster.casts[1].args["reboot_type"] == "SOFT"


def test_a_failed_operation_says_why_and_ends_its_action_in_error(
    kube: RecordingKube, conductor: Conductor, uuid: str
) -> None:
    conductor.api.apply_spec(_change(uuid, 2, powerState="Paused"))
    conductor.manager.operations.operation_finished(
        _finished(uuid, "pause", "active", "running", result="Error", message="libvirt said no"),
        "req-gen-2",
    )
    synced = _synced(kube, uuid)
    assert (synced["reason"], synced["message"]) == (
        "OperationFailed",
        "pause failed on host h1: libvirt said no",
    )
    assert kube.status_of(instance_name(uuid))["phase"] == "Running"
    conductor.history.flush()
    action = _action(kube, "pause")
    assert action["result"] == "Error"
    assert action["events"][0]["details"] == "libvirt said no"


def test_a_report_of_an_operation_not_under_way_changes_nothing(
    db_session_factory: db_engine.SessionFactory, conductor: Conductor, uuid: str
) -> None:
    conductor.manager.operations.operation_finished(
        _finished(uuid, "stop", "stopped", "shutdown"), "req-unknown"
    )
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.power_state) == ("active", "running")


def test_a_guest_that_powers_itself_off_is_started_again_under_run_strategy_always(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    caster.casts.clear()
    conductor.instances.instance_update(
        payloads.InstanceUpdate(
            instance_uuid=uuid,
            host="h1",
            vm_state="stopped",
            task_state=None,
            power_state="shutdown",
        )
    )
    assert caster.methods() == ["start_instance"]
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state) == ("stopped", "powering-on")
    conductor.history.flush()
    action = _action(kube, "start")
    assert (
        action["message"] == "the guest powered itself off; spec.runStrategy Always starts it again"
    )
    assert [event[1] for event in kube.events] == ["Restarting"]


def test_a_guest_that_powers_itself_off_stays_stopped_under_run_strategy_manual(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    kube.instances[(NAMESPACE, instance_name(uuid))]["spec"]["runStrategy"] = "Manual"
    caster.casts.clear()
    conductor.instances.instance_update(
        payloads.InstanceUpdate(
            instance_uuid=uuid,
            host="h1",
            vm_state="stopped",
            task_state=None,
            power_state="shutdown",
        )
    )
    assert caster.casts == []
    assert kube.status_of(instance_name(uuid))["phase"] == "Stopped"
    synced = _synced(kube, uuid)
    assert (synced["status"], synced["reason"]) == ("False", "GuestPoweredOff")
    assert f"kubectl nova start {instance_name(uuid)}" in synced["message"]
    assert _record(db_session_factory, uuid).task_state is None


def test_a_periodic_report_during_an_operation_does_not_end_it(
    db_session_factory: db_engine.SessionFactory, conductor: Conductor, uuid: str
) -> None:
    conductor.api.apply_spec(_change(uuid, 2, reboot={"requestedAt": "now"}))
    # Mid-reboot the host's periodic sync sees the guest shut off.
    conductor.instances.instance_update(
        payloads.InstanceUpdate(
            instance_uuid=uuid,
            host="h1",
            vm_state="stopped",
            task_state=None,
            power_state="shutdown",
        )
    )
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state, record.power_state) == (
        "active",
        "rebooting",
        "shutdown",
    )


def test_an_operation_on_a_host_that_is_down_is_refused(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        session.execute(sa.update(models.Service).values(last_seen_up=T0 - dt.timedelta(days=1)))
    caster.casts.clear()
    conductor.api.apply_spec(_change(uuid, 2, powerState="Stopped"))
    assert caster.casts == []
    assert _synced(kube, uuid)["message"] == "cannot stop: its host h1 is down"


def test_operations_under_way_are_cast_again_at_start_up_then_again_then_rolled_back(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    conductor.api.apply_spec(_change(uuid, 2, powerState="Stopped"))
    caster.casts.clear()
    operations = conductor.stale
    started = _started(db_session_factory, uuid)

    operations.finish_stale()  # the first sweep of a process: everything under way again
    assert caster.methods() == ["stop_instance"]
    assert caster.casts[0].request_id == "req-gen-2"

    limit = dt.timedelta(seconds=120 + 60)
    operations.finish_stale(now=started + limit / 2)
    assert caster.methods() == ["stop_instance"]
    operations.finish_stale(now=started + limit + dt.timedelta(seconds=1))
    operations.finish_stale(now=started + limit + dt.timedelta(seconds=2))
    assert caster.methods() == ["stop_instance", "stop_instance"]

    operations.finish_stale(now=started + 2 * limit + dt.timedelta(seconds=1))
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state) == ("active", None)
    synced = _synced(kube, uuid)
    assert synced["reason"] == "OperationFailed"
    assert synced["message"] == "stop rolled back: host h1 did not answer within 360 s"
    conductor.history.flush()
    action = _action(kube, "stop")
    assert action["result"] == "Error"
    assert action["events"][-1]["event"] == "conductor_roll_back"

    # The host's answer, late, changes nothing; its periodic report brings the truth.
    conductor.manager.operations.operation_finished(
        _finished(uuid, "stop", "stopped", "shutdown"), "req-gen-2"
    )
    assert _record(db_session_factory, uuid).vm_state == "active"


def _started(session_factory: db_engine.SessionFactory, uuid: str) -> dt.datetime:
    with db_engine.transaction(session_factory) as session:
        action = db_api.action_latest_unfinished(session, uuid)
        assert action is not None
        assert action.start_time is not None
        return action.start_time


NEW_IMAGE = {
    "name": "tiny-2",
    "url": "http://images.example/tiny-2.qcow2",
    "sha256": "b" * 64,
    "disk_format": "qcow2",
    "architecture": None,
    "hypervisor_type": None,
}


def test_a_new_image_rebuilds_the_instance_where_it_is_with_the_specs_user_data(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    caster.casts.clear()
    change = _change(uuid, 2, userData="hello again")
    change = dataclasses.replace(
        change, spec={**change.spec, "image": "tiny-2"}, image=dict(NEW_IMAGE)
    )
    conductor.api.apply_spec(change)

    assert [(c.topic, c.method) for c in caster.casts] == [("compute.h1", "rebuild_instance")]
    sent = payloads.RebuildInstance.model_validate(caster.casts[0].args)
    assert sent.power_on is True
    assert (sent.instance.uuid, sent.instance.image.name, sent.instance.user_data) == (
        uuid,
        "tiny-2",
        "hello again",
    )
    record = _record(db_session_factory, uuid)
    assert (record.task_state, record.image["name"], record.host) == ("rebuilding", "tiny-2", "h1")

    launched_before = record.launched_at
    conductor.manager.operations.operation_finished(
        _finished(uuid, "rebuild", "active", "running"), "req-gen-2"
    )
    conductor.api.apply_spec(change)
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state, record.generation) == ("active", None, 2)
    assert caster.methods() == ["rebuild_instance"]
    # Launched again when the rebuild ended, as in Nova.
    assert record.launched_at == T0 + dt.timedelta(seconds=2)
    assert record.launched_at != launched_before


def test_a_stopped_instance_is_rebuilt_stopped_and_one_generation_runs_its_operations_in_turn(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, uuid, vm_state="stopped", power_state="shutdown")
    caster.casts.clear()
    # One change asks for a new image and for the instance to run.
    change = dataclasses.replace(
        _change(uuid, 2, powerState="Running"),
        spec={"flavor": "m1.tiny", "image": "tiny-2", "powerState": "Running"},
        image=dict(NEW_IMAGE),
    )
    conductor.api.apply_spec(change)
    assert caster.methods() == ["rebuild_instance"]
    assert caster.casts[0].args["power_on"] is False
    conductor.manager.operations.operation_finished(
        _finished(uuid, "rebuild", "stopped", "shutdown"), "req-gen-2"
    )
    assert _record(db_session_factory, uuid).generation == 1  # not all applied yet

    conductor.api.apply_spec(dataclasses.replace(change, request_id="req-next"))
    assert caster.methods() == ["rebuild_instance", "start_instance"]
    conductor.manager.operations.operation_finished(
        _finished(uuid, "start", "active", "running"), "req-next"
    )
    conductor.api.apply_spec(dataclasses.replace(change, request_id="req-last"))
    assert caster.methods() == ["rebuild_instance", "start_instance"]
    assert _record(db_session_factory, uuid).generation == 2
    assert _synced(kube, uuid)["status"] == "True"


def test_an_image_that_does_not_exist_is_refused_naming_the_field(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    caster.casts.clear()
    change = dataclasses.replace(
        _change(uuid, 2),
        spec={"flavor": "m1.tiny", "image": "nope"},
        unresolved=("ImageNotFound", "spec.image: Image 'nope' does not exist"),
    )
    conductor.api.apply_spec(change)
    assert caster.casts == []
    synced = _synced(kube, uuid)
    assert (synced["reason"], synced["message"]) == (
        "ImageNotFound",
        "spec.image: Image 'nope' does not exist",
    )
    record = _record(db_session_factory, uuid)
    assert (record.image["name"], record.generation) == ("tiny", 2)


def test_a_failed_operation_is_not_tried_again_until_the_spec_changes(
    db_session_factory: db_engine.SessionFactory,
    caster: RecordingCaster,
    conductor: Conductor,
    uuid: str,
) -> None:
    conductor.api.apply_spec(_change(uuid, 2, powerState="Paused"))
    conductor.manager.operations.operation_finished(
        _finished(uuid, "pause", "active", "running", result="Error", message="no"),
        "req-gen-2",
    )
    caster.casts.clear()
    conductor.api.apply_spec(_change(uuid, 2, powerState="Paused"))
    assert caster.casts == []
    assert _record(db_session_factory, uuid).generation == 2
    conductor.api.apply_spec(_change(uuid, 3, powerState="Paused"))
    assert caster.methods() == ["pause_instance"]
