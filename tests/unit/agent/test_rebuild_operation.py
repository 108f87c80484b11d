"""The manager's rebuild (contract 1.3, ``rebuild_instance``): the payload becomes the driver's
spec, one ``instance_operation_finished`` answers it, a failure is reported with the end state
the driver left, and nothing else speaks about the instance while it is rebuilt."""

from __future__ import annotations

import threading
import time
from typing import Any

import pydantic
import pytest

from kubenova.rpc import conductor_rpcapi, envelope, payloads
from kubenova_agent import exceptions, manager
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState
from tests.support import RecordingCaster
from tests.unit.agent.scripted_driver import ScriptedDriver

UUID = "6f1c1d9e-0000-4000-8000-000000000001"
OTHER = "6f1c1d9e-0000-4000-8000-000000000002"
UNKNOWN = "6f1c1d9e-0000-4000-8000-0000000000ff"
NEW_SHA = "b" * 64


@pytest.fixture
def parts():
    caster, driver = RecordingCaster(), ScriptedDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    driver.domains[UUID] = PowerState.RUNNING
    driver.addresses[UUID] = ["192.168.122.7"]
    return compute, driver, caster


def _instance(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "uuid": UUID,
        "name": "vm",
        "namespace": "ns",
        "hostname": "vm-rebuilt",
        "vcpus": 1,
        "memory_mib": 128,
        "disk_gib": 1,
        "image": {
            "name": "tiny-2",
            "url": "http://127.0.0.1/tiny-2.qcow2",
            "sha256": NEW_SHA,
            "disk_format": "qcow2",
        },
        "user_data": "#!/bin/sh\necho rebuilt\n",
        "ssh_authorized_keys": ["ssh-ed25519 AAAA test@kubenova"],
    }
    fields.update(overrides)
    return fields


def _message(power_on: bool | None = None, **overrides: Any) -> envelope.Envelope:
    args: dict[str, Any] = {"instance": _instance(**overrides)}
    if power_on is not None:
        args["power_on"] = power_on
    return envelope.Envelope(
        request_id="req-rebuild",
        method="rebuild_instance",
        args=args,
        sender="operator",
        version="1.3",
    )


def _finished(caster: RecordingCaster) -> list[payloads.InstanceOperationFinished]:
    return [
        payloads.InstanceOperationFinished.model_validate(cast.args)
        for cast in caster.casts
        if cast.method == "instance_operation_finished"
    ]


def test_a_rebuild_hands_the_driver_the_payloads_instance_and_reports_once(parts):
    compute, driver, caster = parts
    compute.handle(_message(), None)

    ((spec, power_on),) = driver.rebuilt
    assert power_on is True  # the contract's default
    assert spec == virt_driver.InstanceSpec(
        uuid=UUID,
        name="vm",
        hostname="vm-rebuilt",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        image=virt_driver.ImageRef(
            name="tiny-2",
            url="http://127.0.0.1/tiny-2.qcow2",
            sha256=NEW_SHA,
            disk_format="qcow2",
        ),
        user_data=b"#!/bin/sh\necho rebuilt\n",
        ssh_authorized_keys=("ssh-ed25519 AAAA test@kubenova",),
    )
    assert caster.sent() == [("conductor", "instance_operation_finished")]
    assert caster.casts[0].request_id == "req-rebuild"
    (finished,) = _finished(caster)
    assert (finished.instance_uuid, finished.host, finished.operation) == (UUID, "h1", "rebuild")
    assert (finished.result, finished.message) == ("Success", None)
    assert (finished.vm_state, finished.power_state) == ("active", "running")
    assert finished.addresses == ("192.168.122.7",)
    assert finished.started_at <= finished.finished_at


def test_a_rebuild_with_power_on_false_leaves_the_instance_stopped(parts):
    compute, driver, caster = parts
    driver.domains[UUID] = PowerState.SHUTDOWN
    compute.handle(_message(power_on=False), None)
    assert driver.rebuilt[0][1] is False
    (finished,) = _finished(caster)
    assert (finished.result, finished.vm_state, finished.power_state) == (
        "Success",
        "stopped",
        "shutdown",
    )


def test_a_suspended_instance_rebuilt_runs_afresh(parts):
    compute, driver, caster = parts
    driver.domains[UUID] = PowerState.SHUTDOWN
    driver.saved.add(UUID)
    compute.handle(_message(), None)
    (finished,) = _finished(caster)
    assert (finished.vm_state, finished.power_state) == ("active", "running")


def test_an_unknown_instance_is_an_error_report(parts):
    compute, driver, caster = parts
    compute.handle(_message(uuid=UNKNOWN), None)
    assert driver.rebuilt == []
    (finished,) = _finished(caster)
    assert (finished.instance_uuid, finished.result) == (UNKNOWN, "Error")
    assert finished.message == f"instance {UNKNOWN} is not on this host"
    assert (finished.vm_state, finished.power_state) == ("error", "nostate")


def test_a_bad_image_is_an_error_and_the_instance_is_reported_as_it_still_is(parts):
    compute, driver, caster = parts
    driver.rebuild_fails_with = exceptions.RebuildFailed(
        UUID, f"image http://127.0.0.1/tiny-2.qcow2 has sha256 {'c' * 64}", intact=True
    )
    compute.handle(_message(), None)
    (finished,) = _finished(caster)
    assert finished.result == "Error"
    assert finished.message is not None
    assert "has sha256" in finished.message
    assert finished.message.endswith("the instance is unchanged")
    # Still running on its old disk.
    assert (finished.vm_state, finished.power_state) == ("active", "running")
    assert finished.addresses == ("192.168.122.7",)


def test_a_rebuild_that_broke_the_instance_reports_it_in_error(parts):
    compute, driver, caster = parts
    compute.sync_power_states()
    caster.casts.clear()
    driver.rebuild_fails_with = exceptions.RebuildFailed(
        UUID, "internal error: qemu unexpectedly closed the monitor", intact=False
    )
    compute.handle(_message(), None)
    (finished,) = _finished(caster)
    assert finished.result == "Error"
    assert finished.message is not None
    assert "qemu unexpectedly closed the monitor" in finished.message
    assert finished.message.endswith("left shut off, in error: rebuild it again")
    assert (finished.vm_state, finished.power_state) == ("error", "shutdown")
    # The sync has nothing to add: the host's view has not changed since the report.
    caster.casts.clear()
    compute.sync_power_states()
    assert caster.casts == []
    # A rebuild that succeeds brings it back.
    compute.handle(_message(), None)
    assert [(f.result, f.vm_state) for f in _finished(caster)] == [("Success", "active")]


def test_an_instance_the_drivers_checks_refuse_is_an_error_report_not_a_dead_letter(parts):
    compute, driver, caster = parts
    # Under the contract's cap in characters, over the driver's in bytes.
    compute.handle(_message(user_data="é" * 40_000), None)
    assert driver.rebuilt == []
    (finished,) = _finished(caster)
    assert finished.result == "Error"
    assert finished.message is not None
    assert "user_data is 80000 bytes" in finished.message
    assert finished.vm_state == "active"


def test_a_malformed_rebuild_message_is_refused(parts):
    compute, _, caster = parts
    bad = envelope.Envelope(
        request_id="req-bad",
        method="rebuild_instance",
        args={"instance_uuid": UUID},
        sender="operator",
        version="1.3",
    )
    with pytest.raises(pydantic.ValidationError):
        compute.handle(bad, None)
    assert caster.casts == []


def test_a_redelivered_rebuild_ends_the_same_and_reports_again(parts):
    compute, driver, caster = parts
    compute.handle(_message(power_on=False), None)
    compute.handle(_message(power_on=False), None)
    # Rebuilt twice (the second rebuild is a full one), to the same end.
    assert [spec for spec, _ in driver.rebuilt] == [driver.rebuilt[0][0]] * 2
    assert [(f.operation, f.result, f.vm_state) for f in _finished(caster)] == [
        ("rebuild", "Success", "stopped"),
        ("rebuild", "Success", "stopped"),
    ]


def test_nothing_else_speaks_about_the_instance_while_it_is_rebuilt():
    """The sync and the lifecycle events keep quiet about the instance being rebuilt (the
    rebuild powers it off and on: events and a state in between), but not about others; the
    rebuild's report is the one word about it, and the sync has nothing to add after it."""
    caster = RecordingCaster()
    in_rebuild = threading.Event()
    release = threading.Event()

    class SlowRebuild(ScriptedDriver):
        def rebuild(self, instance: virt_driver.InstanceSpec, power_on: bool) -> None:
            self.guest_changes(instance.uuid, PowerState.SHUTDOWN)
            in_rebuild.set()
            assert release.wait(5)
            super().rebuild(instance, power_on)
            self.guest_changes(instance.uuid, PowerState.RUNNING)

    driver = SlowRebuild()
    driver.domains = {UUID: PowerState.RUNNING, OTHER: PowerState.RUNNING}
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    compute.sync_power_states()
    caster.casts.clear()
    assert compute.start_lifecycle_events()
    rebuilder = threading.Thread(target=compute.handle, args=(_message(), None))
    rebuilder.start()
    try:
        assert in_rebuild.wait(5)
        driver.guest_changes(OTHER, PowerState.PAUSED)
        time.sleep(0.2)  # time for the event worker to (wrongly) report the instance
        compute.sync_power_states()
        assert [(c.method, c.args["instance_uuid"]) for c in caster.casts] == [
            ("instance_update", OTHER)
        ]
    finally:
        release.set()
        rebuilder.join(5)
        time.sleep(0.2)
        compute.stop_lifecycle_events()
    assert caster.methods() == ["instance_update", "instance_operation_finished"]
    compute.sync_power_states()
    assert caster.methods() == ["instance_update", "instance_operation_finished"]
