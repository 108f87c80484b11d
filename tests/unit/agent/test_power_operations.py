"""The manager's power operations (contract 1.3): one ``instance_operation_finished`` per
message, with the state after it, errors reported rather than raised, and no redundant or
stale ``instance_update`` around it."""

from __future__ import annotations

import datetime
import threading

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


@pytest.fixture
def parts():
    caster, driver = RecordingCaster(), ScriptedDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    driver.domains[UUID] = PowerState.RUNNING
    driver.addresses[UUID] = ["192.168.122.7"]
    return compute, driver, caster


def _message(method: str, **args) -> envelope.Envelope:
    args.setdefault("instance_uuid", UUID)
    return envelope.Envelope(
        request_id="req-op", method=method, args=args, sender="operator", version="1.3"
    )


def _finished(caster: RecordingCaster) -> list[payloads.InstanceOperationFinished]:
    return [
        payloads.InstanceOperationFinished.model_validate(cast.args)
        for cast in caster.casts
        if cast.method == "instance_operation_finished"
    ]


@pytest.mark.parametrize(
    ("start", "method", "args", "operation", "vm_state", "power_state"),
    [
        (PowerState.RUNNING, "stop_instance", {}, "stop", "stopped", "shutdown"),
        (PowerState.SHUTDOWN, "start_instance", {}, "start", "active", "running"),
        (PowerState.RUNNING, "pause_instance", {}, "pause", "paused", "paused"),
        (PowerState.PAUSED, "unpause_instance", {}, "unpause", "active", "running"),
        (PowerState.RUNNING, "suspend_instance", {}, "suspend", "suspended", "shutdown"),
        (
            PowerState.RUNNING,
            "reboot_instance",
            {"reboot_type": "SOFT"},
            "reboot",
            "active",
            "running",
        ),
    ],
)
def test_each_operation_reports_once_with_the_state_after_it(
    parts, start, method, args, operation, vm_state, power_state
):
    compute, driver, caster = parts
    driver.domains[UUID] = start
    before = datetime.datetime.now(datetime.UTC)
    compute.handle(_message(method, **args), None)
    after = datetime.datetime.now(datetime.UTC)

    assert caster.sent() == [("conductor", "instance_operation_finished")]
    assert caster.casts[0].request_id == "req-op"
    (finished,) = _finished(caster)
    assert (finished.instance_uuid, finished.host, finished.operation) == (UUID, "h1", operation)
    assert (finished.result, finished.message) == ("Success", None)
    assert (finished.vm_state, finished.power_state) == (vm_state, power_state)
    assert before <= finished.started_at <= finished.finished_at <= after
    assert finished.started_at.tzinfo is not None
    if power_state == "running":
        assert finished.addresses == ("192.168.122.7",)


def test_resume_restores_a_suspended_instance(parts):
    compute, _, caster = parts
    compute.handle(_message("suspend_instance"), None)
    compute.handle(_message("resume_instance"), None)
    assert [(f.operation, f.vm_state) for f in _finished(caster)] == [
        ("suspend", "suspended"),
        ("resume", "active"),
    ]


def test_an_unknown_instance_is_an_error_report_not_an_exception(parts):
    compute, _, caster = parts
    compute.handle(_message("stop_instance", instance_uuid=UNKNOWN), None)
    (finished,) = _finished(caster)
    assert finished.result == "Error"
    assert finished.message == f"instance {UNKNOWN} is not on this host"
    assert (finished.vm_state, finished.power_state) == ("error", "nostate")


def test_an_operation_that_does_not_apply_is_an_error_with_the_state_as_it_is(parts):
    compute, driver, caster = parts
    driver.domains[UUID] = PowerState.SHUTDOWN
    compute.handle(_message("pause_instance"), None)
    (finished,) = _finished(caster)
    assert finished.result == "Error"
    assert finished.message == f"cannot pause instance {UUID}: it is stopped"
    assert (finished.vm_state, finished.power_state) == ("stopped", "shutdown")


def test_a_hypervisor_error_is_reported_with_its_message(parts):
    compute, driver, caster = parts
    driver.operation_fails_with = exceptions.HypervisorError("libvirtd said no", code=1)
    compute.handle(_message("suspend_instance"), None)
    (finished,) = _finished(caster)
    assert (finished.result, finished.message) == ("Error", "libvirtd said no")
    assert finished.vm_state == "active"


def test_a_soft_reboot_that_became_hard_says_so(parts):
    compute, driver, caster = parts
    driver.acpi_ignored.add(UUID)
    compute.handle(_message("reboot_instance", reboot_type="SOFT", shutdown_timeout_s=60), None)
    (finished,) = _finished(caster)
    assert finished.result == "Success"
    assert finished.message == "the guest did not shut down within 60 s; rebooted hard"


def test_a_soft_reboot_of_a_stopped_instance_is_hard_and_says_why(parts):
    compute, driver, caster = parts
    driver.domains[UUID] = PowerState.SHUTDOWN
    compute.handle(_message("reboot_instance", reboot_type="SOFT"), None)
    (finished,) = _finished(caster)
    assert finished.vm_state == "active"
    assert finished.message is not None
    assert "was stopped" in finished.message
    assert finished.message.endswith("rebooted hard")


def test_a_hard_reboot_has_nothing_to_add(parts):
    compute, driver, caster = parts
    driver.acpi_ignored.add(UUID)
    compute.handle(_message("reboot_instance", reboot_type="HARD"), None)
    (finished,) = _finished(caster)
    assert (finished.result, finished.message, finished.vm_state) == ("Success", None, "active")


def test_a_clean_stop_that_had_to_force_says_so(parts):
    compute, driver, caster = parts
    driver.acpi_ignored.add(UUID)
    compute.handle(_message("stop_instance", shutdown_timeout_s=3), None)
    (finished,) = _finished(caster)
    assert finished.message == "the guest did not shut down within 3 s; powered off"
    assert finished.vm_state == "stopped"


def test_a_stop_without_clean_shutdown_forces_and_says_nothing(parts):
    compute, _, caster = parts
    compute.handle(_message("stop_instance", clean_shutdown=False), None)
    (finished,) = _finished(caster)
    assert (finished.message, finished.vm_state) == (None, "stopped")


def test_stopping_a_suspended_instance_discards_its_memory_and_says_so(parts):
    compute, _, caster = parts
    compute.handle(_message("suspend_instance"), None)
    compute.handle(_message("stop_instance"), None)
    stop = _finished(caster)[-1]
    assert (stop.vm_state, stop.result) == ("stopped", "Success")
    assert stop.message == "the instance was suspended; its saved memory was discarded"


def test_a_redelivered_operation_has_one_effect_and_reports_again(parts):
    compute, driver, caster = parts
    for method in ("pause_instance", "stop_instance", "start_instance", "suspend_instance"):
        for _ in range(2):
            compute.handle(_message(method), None)
    assert driver.effects == [
        ("pause", UUID),
        ("power_off", UUID),
        ("power_on", UUID),
        ("suspend", UUID),
    ]
    assert [(f.operation, f.result, f.vm_state) for f in _finished(caster)] == [
        ("pause", "Success", "paused"),
        ("pause", "Success", "paused"),
        ("stop", "Success", "stopped"),
        ("stop", "Success", "stopped"),
        ("start", "Success", "active"),
        ("start", "Success", "active"),
        ("suspend", "Success", "suspended"),
        ("suspend", "Success", "suspended"),
    ]


def test_the_periodic_sync_has_nothing_to_add_after_an_operation(parts):
    compute, _, caster = parts
    compute.build_and_run_instance(_build_payload(), "req-build")
    compute.handle(_message("pause_instance"), None)
    caster.casts.clear()
    compute.sync_power_states()
    assert caster.casts == []


def test_the_periodic_sync_reports_a_suspended_instance_as_suspended(parts):
    compute, driver, caster = parts
    compute.sync_power_states()
    caster.casts.clear()
    # Suspended behind the agent's back (by hand, with virsh managedsave).
    driver.saved.add(UUID)
    driver.domains[UUID] = PowerState.SHUTDOWN
    compute.sync_power_states()
    ((_, method, args, _),) = caster.casts
    assert method == "instance_update"
    assert (args["vm_state"], args["power_state"]) == ("suspended", "shutdown")


def test_a_state_read_before_an_operation_is_not_reported_after_it():
    """The sync lists the host, an operation runs and reports, then the sync would report
    what it read before: that stale view must not follow the operation's report."""
    caster = RecordingCaster()

    class OperationDuringListing(ScriptedDriver):
        operate = True

        def list_instance_states(self) -> dict[str, virt_driver.InstanceState]:
            states = super().list_instance_states()
            if self.operate:
                self.operate = False
                compute.handle(_message("stop_instance"), None)
            return states

    driver = OperationDuringListing()
    driver.domains[UUID] = PowerState.RUNNING
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    compute.sync_power_states()
    assert caster.methods() == ["instance_operation_finished"]
    assert _finished(caster)[0].vm_state == "stopped"
    # The next sync reads afresh, and the operation's report already said it.
    compute.sync_power_states()
    assert caster.methods() == ["instance_operation_finished"]


def test_other_instances_are_still_reported_while_one_is_operated_on():
    caster = RecordingCaster()
    in_operation = threading.Event()
    release = threading.Event()

    class SlowStop(ScriptedDriver):
        def power_off(self, instance_uuid: str, timeout_s: float) -> bool:
            in_operation.set()
            assert release.wait(5)
            return super().power_off(instance_uuid, timeout_s)

    driver = SlowStop()
    driver.domains = {UUID: PowerState.RUNNING, OTHER: PowerState.RUNNING}
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    compute.sync_power_states()
    caster.casts.clear()
    stopper = threading.Thread(target=compute.handle, args=(_message("stop_instance"), None))
    stopper.start()
    try:
        assert in_operation.wait(5)
        # Both change while the stop waits: only the instance not being stopped is reported.
        driver.domains[UUID] = PowerState.SHUTDOWN
        driver.domains[OTHER] = PowerState.PAUSED
        compute.sync_power_states()
        assert [(c.method, c.args["instance_uuid"]) for c in caster.casts] == [
            ("instance_update", OTHER)
        ]
    finally:
        release.set()
        stopper.join(5)
    assert caster.methods()[-1] == "instance_operation_finished"


def _build_payload() -> payloads.InstancePayload:
    return payloads.InstancePayload(
        uuid=UUID,
        name="vm",
        namespace="ns",
        hostname="vm",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        image=payloads.ImagePayload(
            name="tiny", url="http://127.0.0.1/t", sha256="a" * 64, disk_format="qcow2"
        ),
    )
