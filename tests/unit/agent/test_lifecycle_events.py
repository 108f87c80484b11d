"""Lifecycle events reach the conductor through the manager's event worker: a change the
guest makes is reported without waiting for the periodic sync, events are handled off the
hypervisor's thread, and an instance being worked on is left to the work's own report."""

from __future__ import annotations

import threading
import time

from kubenova.rpc import conductor_rpcapi, envelope
from kubenova_agent import lifecycle, manager
from kubenova_agent.virt.power_state import PowerState
from tests.support import RecordingCaster
from tests.unit.agent.scripted_driver import ScriptedDriver

UUID = "6f1c1d9e-0000-4000-8000-000000000001"
PATIENCE_S = 5.0


class WaitingCaster(RecordingCaster):
    """Records casts and lets a test wait for the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Condition()

    def cast(self, topic, method, args, request_id):
        with self.arrived:
            message_id = super().cast(topic, method, args, request_id)
            self.arrived.notify_all()
        return message_id

    def wait_for(self, count: int) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.casts) >= count, PATIENCE_S)


def _parts():
    caster, driver = WaitingCaster(), ScriptedDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    driver.domains[UUID] = PowerState.RUNNING
    compute.sync_power_states()
    caster.casts.clear()
    return compute, driver, caster


def test_a_guest_that_powers_itself_off_is_reported_by_the_event():
    compute, driver, caster = _parts()
    assert compute.start_lifecycle_events()
    try:
        driver.guest_changes(UUID, PowerState.SHUTDOWN)
        assert caster.wait_for(1)
    finally:
        compute.stop_lifecycle_events()
    ((_, method, args, _),) = caster.casts
    assert method == "instance_update"
    assert (args["vm_state"], args["power_state"]) == ("stopped", "shutdown")
    # The periodic sync that follows has nothing to add.
    compute.sync_power_states()
    assert len(caster.casts) == 1


def test_the_event_is_handled_off_the_thread_that_delivers_it():
    compute, driver, caster = _parts()
    handled_on: list[threading.Thread] = []
    original = compute._sync_one

    def recording_sync(instance_uuid: str, *, force: bool) -> None:
        handled_on.append(threading.current_thread())
        original(instance_uuid, force=force)

    compute._sync_one = recording_sync  # type: ignore[method-assign]
    compute.start_lifecycle_events()
    try:
        driver.guest_changes(UUID, PowerState.PAUSED)
        assert caster.wait_for(1)
    finally:
        compute.stop_lifecycle_events()
    assert handled_on
    assert threading.current_thread() not in handled_on


def test_an_event_about_an_instance_being_operated_on_is_left_to_the_operation():
    compute, driver, caster = _parts()
    compute.start_lifecycle_events()
    original_power_off = driver.power_off

    def power_off_with_event(instance_uuid: str, timeout_s: float) -> bool:
        clean = original_power_off(instance_uuid, timeout_s)
        driver.guest_changes(instance_uuid, PowerState.SHUTDOWN)
        # Give the worker time to (wrongly) report it while the operation is still running.
        time.sleep(0.2)
        return clean

    driver.power_off = power_off_with_event  # type: ignore[method-assign]
    try:
        compute.handle(
            envelope.Envelope(
                request_id="req-stop",
                method="stop_instance",
                args={"instance_uuid": UUID},
                sender="operator",
            ),
            None,
        )
        time.sleep(0.2)
    finally:
        compute.stop_lifecycle_events()
    assert caster.methods() == ["instance_operation_finished"]


def test_events_about_unknown_domains_are_ignored():
    compute, driver, caster = _parts()
    compute.start_lifecycle_events()
    try:
        driver.listener("00000000-0000-4000-8000-000000000000")
        driver.guest_changes(UUID, PowerState.PAUSED)
        assert caster.wait_for(1)
    finally:
        compute.stop_lifecycle_events()
    assert [c.args["instance_uuid"] for c in caster.casts] == [UUID]


def test_the_worker_coalesces_a_burst_and_survives_a_failing_report():
    seen: list[str] = []

    def handle(instance_uuid: str) -> None:
        seen.append(instance_uuid)
        if instance_uuid == "boom":
            raise RuntimeError("the bus is down")

    worker = lifecycle.EventWorker(handle)
    # Queued before the worker runs: one burst.
    for instance_uuid in ("a", "boom", "a", "b", "a"):
        worker.put(instance_uuid)
    worker.start()
    worker.put("c")
    worker.stop()
    # Each instance of the burst once, in the order of its first event, and the worker still
    # handles what comes after the failure.
    assert seen == ["a", "boom", "b", "c"]
