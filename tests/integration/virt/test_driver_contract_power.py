"""The ComputeDriver contract's power operations and lifecycle events, proved against the
TestDriver and the LibvirtDriver alike (see conftest.py).

Real guests boot under TCG in several seconds, so the guests are shared by the module's tests
(``shared_harness``): each test first brings its guest into the state it starts from, and waits
for the guest's boot only where the guest's own answer matters (the ACPI power button). With
the LibvirtDriver the guest is the tiny guest image (hack/guest), whose user-data switches make
one guest ignore the power button and another power itself off.
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import time
import uuid

import pytest

from kubenova.rpc import conductor_rpcapi
from kubenova_agent import exceptions, manager
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.libvirt import connection
from kubenova_agent.virt.power_state import PowerState
from kubenova_agent.virt.testdriver import TestDriver
from tests.integration.virt.conftest import Harness
from tests.support import RecordingCaster
from tests.support.required import missing

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
GUEST_BOOT_TIMEOUT = 120.0
#: Printed once acpid runs (it starts before the config drive is printed).
ACPI_READY = "kubenova-guest: user-data end"
BOOTING = "kubenova-guest: instance-uuid="
#: The issue's bound on reporting a guest's own power-off.
EVENT_REPORT_BOUND_S = 2.0
#: Short enough to keep the suite quick, long enough for a loaded machine's libvirt calls.
DEAF_TIMEOUT_S = 3

OPERATIONS = {
    "power_off": (60,),
    "power_on": (),
    "pause": (),
    "unpause": (),
    "suspend": (),
    "resume": (),
    "reboot": (False, 60),
}


@dataclasses.dataclass
class Guest:
    """One instance shared by the module's tests, and what its console has said."""

    harness: Harness
    uuid: str
    #: Where in the console log the guest's latest boot begins.
    boot_offset: int = 0

    @property
    def driver(self) -> virt_driver.ComputeDriver:
        return self.harness.driver

    @property
    def real(self) -> bool:
        return self.harness.kind == "libvirt"

    def state(self) -> virt_driver.InstanceState:
        state = self.driver.get_instance_state(self.uuid)
        listed = self.driver.list_instance_states()[self.uuid]
        # The periodic sync's listing and the instance's own answer agree.
        assert (listed.power_state, listed.saved) == (state.power_state, state.saved)
        return state

    def console(self) -> str:
        path = self.driver.console_log_path(self.uuid) if self.real else None
        return pathlib.Path(path).read_text(errors="replace") if path else ""

    def wait_for(self, line: str, after: int, timeout: float = GUEST_BOOT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.console()[after:]:
            assert time.monotonic() < deadline, f"no {line!r}: {self.console()[-1500:]}"
            time.sleep(0.2)

    def mark_boot(self) -> None:
        """The guest is about to boot afresh: its console's new lines start here."""
        self.boot_offset = len(self.console())

    def require_os(self) -> None:
        if self.real and not self.harness.served.boots:
            missing("the tiny guest image is not built (hack/guest/build.sh)")

    def answers_acpi(self) -> None:
        """Wait until the current boot has come far enough to answer the power button."""
        self.require_os()
        if self.real:
            self.wait_for(ACPI_READY, self.boot_offset)

    def running(self) -> None:
        """Bring the guest to running, however it was left."""
        state = self.driver.get_instance_state(self.uuid)
        if state.saved:
            self.driver.resume(self.uuid)
        elif state.power_state is PowerState.PAUSED:
            self.driver.unpause(self.uuid)
        elif state.power_state is not PowerState.RUNNING:
            self.mark_boot()
            self.driver.power_on(self.uuid)
        assert self.driver.get_power_state(self.uuid) is PowerState.RUNNING

    def reboot(self, hard: bool, timeout_s: float) -> virt_driver.RebootType:
        offset = len(self.console())
        done = self.driver.reboot(self.uuid, hard, timeout_s)
        self.boot_offset = offset
        return done

    def booted_again(self) -> None:
        """Wait until the guest's latest boot (since :meth:`mark_boot`) has printed its first
        line: it was booted, not restored."""
        if self.real and self.harness.served.boots:
            self.wait_for(BOOTING, self.boot_offset)


def _spawn(harness: Harness, user_data: bytes) -> Guest:
    instance = harness.instance(user_data=user_data)
    harness.driver.spawn(instance)
    return Guest(harness, instance.uuid)


@pytest.fixture(scope="module")
def deaf_guest(shared_harness) -> Guest:
    """A guest that ignores the ACPI power button."""
    deaf = _spawn(shared_harness, b"#!/bin/sh\n#kubenova-guest: ignore-acpi\n")
    if isinstance(shared_harness.driver, TestDriver):
        shared_harness.driver.simulate_guest_ignores_acpi(deaf.uuid)
    return deaf


@pytest.fixture(scope="module")
def guest(shared_harness, deaf_guest) -> Guest:
    """A guest that honours the ACPI power button. The deaf guest is made first, so that it
    boots while this one's tests run, not when its own test comes."""
    del deaf_guest
    return _spawn(shared_harness, b"#!/bin/sh\necho power contract\n")


def _switch_honoured(guest: Guest, switch: str) -> None:
    """Skip (or fail, under make test) when the image predates the guest's switches."""
    if guest.real:
        guest.wait_for(ACPI_READY, guest.boot_offset)
        if f"kubenova-guest: switch {switch}" not in guest.console()[guest.boot_offset :]:
            missing(f"the tiny guest image predates its {switch} switch: hack/guest/build.sh")


def _timed(call, *args):
    started = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - started


# -- what needs the guest to answer: clean stop, soft reboot, suspend and resume ----------------


def test_clean_stop_and_start_round_trip(guest: Guest):
    guest.running()
    guest.answers_acpi()
    clean, took = _timed(guest.driver.power_off, guest.uuid, 60)
    assert clean is True, "the guest honours the power button"
    assert took < 60
    assert guest.state() == virt_driver.InstanceState(PowerState.SHUTDOWN, (), saved=False)
    # Stopping a stopped instance does nothing, and says nothing was forced.
    assert guest.driver.power_off(guest.uuid, 60) is True

    guest.mark_boot()
    guest.driver.power_on(guest.uuid)
    assert guest.state().power_state is PowerState.RUNNING
    guest.driver.power_on(guest.uuid)  # a redelivered start
    assert guest.state().power_state is PowerState.RUNNING


def test_suspend_and_resume_keep_the_guest_running_where_it_was(guest: Guest):
    guest.running()
    guest.require_os()
    guest.booted_again()  # past the line a new boot would print again
    before = len(guest.console())
    guest.driver.suspend(guest.uuid)
    suspended = guest.state()
    assert (suspended.power_state, suspended.saved, suspended.addresses) == (
        PowerState.SHUTDOWN,
        True,
        (),
    )
    guest.driver.suspend(guest.uuid)  # a redelivered suspend
    assert guest.state().saved

    guest.driver.resume(guest.uuid)
    resumed = guest.state()
    assert (resumed.power_state, resumed.saved) == (PowerState.RUNNING, False)
    guest.driver.resume(guest.uuid)  # a redelivered resume
    assert guest.state().power_state is PowerState.RUNNING
    # Restored, not booted again: the console has no new boot.
    time.sleep(1.0 if guest.real else 0)
    assert BOOTING not in guest.console()[before:]


def test_soft_reboot_of_a_guest_that_honours_the_power_button(guest: Guest):
    guest.running()
    guest.answers_acpi()
    done, took = _timed(guest.reboot, False, 60)
    assert done is virt_driver.RebootType.SOFT
    assert took < 60
    assert guest.state().power_state is PowerState.RUNNING
    guest.booted_again()


def test_stop_with_no_timeout_powers_off_at_once(guest: Guest):
    guest.running()
    clean, took = _timed(guest.driver.power_off, guest.uuid, 0)
    assert clean is False
    assert took < 10
    assert guest.state().power_state is PowerState.SHUTDOWN


# -- what does not: stop at once, pause, suspend, refusals -------------------------------------


def test_pause_and_unpause(guest: Guest):
    guest.running()
    guest.driver.pause(guest.uuid)
    guest.driver.pause(guest.uuid)
    assert guest.state().power_state is PowerState.PAUSED
    guest.driver.unpause(guest.uuid)
    guest.driver.unpause(guest.uuid)
    assert guest.state().power_state is PowerState.RUNNING


def test_a_paused_instance_suspended_resumes_running(guest: Guest):
    guest.running()
    guest.driver.pause(guest.uuid)
    guest.driver.suspend(guest.uuid)
    assert guest.state().saved
    guest.driver.resume(guest.uuid)
    resumed = guest.state()
    assert (resumed.power_state, resumed.saved) == (PowerState.RUNNING, False)


def test_a_suspended_instance_started_is_restored(guest: Guest):
    guest.running()
    guest.driver.suspend(guest.uuid)
    guest.driver.power_on(guest.uuid)
    assert (guest.state().power_state, guest.state().saved) == (PowerState.RUNNING, False)


def test_stopping_a_suspended_instance_discards_its_saved_memory(guest: Guest):
    guest.running()
    guest.driver.suspend(guest.uuid)
    assert guest.driver.power_off(guest.uuid, 60) is False
    assert guest.state() == virt_driver.InstanceState(PowerState.SHUTDOWN, (), saved=False)


def test_operations_that_do_not_apply_to_a_stopped_instance_are_refused(guest: Guest):
    guest.running()
    guest.driver.power_off(guest.uuid, 0)
    for method in ("pause", "unpause", "suspend", "resume"):
        with pytest.raises(exceptions.InstanceInvalidState, match="stopped") as raised:
            getattr(guest.driver, method)(guest.uuid)
        assert raised.value.instance_uuid == guest.uuid
    assert guest.state().power_state is PowerState.SHUTDOWN


# -- reboot ------------------------------------------------------------------------------------


def test_a_guest_that_ignores_the_power_button_is_rebooted_and_stopped_by_force(
    deaf_guest: Guest,
):
    """One boot for both cases: the soft reboot falls back to a hard one after its timeout,
    then the clean stop to a power-off. The stop does not wait for the new boot: the guest
    ignores the button from its firmware on (without acpid nothing listens to it)."""
    deaf_guest.running()
    deaf_guest.require_os()
    _switch_honoured(deaf_guest, "ignore-acpi")
    done, took = _timed(deaf_guest.reboot, False, DEAF_TIMEOUT_S)
    assert done is virt_driver.RebootType.HARD
    assert took >= DEAF_TIMEOUT_S
    assert deaf_guest.state().power_state is PowerState.RUNNING

    clean, took = _timed(deaf_guest.driver.power_off, deaf_guest.uuid, DEAF_TIMEOUT_S)
    assert clean is False
    assert took >= DEAF_TIMEOUT_S
    assert deaf_guest.state().power_state is PowerState.SHUTDOWN


@pytest.mark.parametrize("start", ["running", "paused", "stopped", "suspended"])
def test_hard_reboot_runs_the_instance_afresh_from_any_state(guest: Guest, start: str):
    guest.running()
    if start == "paused":
        guest.driver.pause(guest.uuid)
    elif start == "stopped":
        guest.driver.power_off(guest.uuid, 0)
    elif start == "suspended":
        guest.driver.suspend(guest.uuid)
    assert guest.reboot(True, 60) is virt_driver.RebootType.HARD
    assert (guest.state().power_state, guest.state().saved) == (PowerState.RUNNING, False)
    if start == "suspended":
        # Booted afresh: the saved memory was discarded, not restored.
        guest.booted_again()


def test_soft_reboot_of_an_instance_that_is_not_running_is_hard(guest: Guest):
    guest.running()
    guest.driver.power_off(guest.uuid, 0)
    assert guest.reboot(False, 60) is virt_driver.RebootType.HARD
    assert guest.state().power_state is PowerState.RUNNING


# -- unknown and malformed instances --------------------------------------------------------


@pytest.mark.parametrize("method", sorted(OPERATIONS))
def test_power_operations_on_an_unknown_instance_raise_instance_not_found(shared_harness, method):
    with pytest.raises(exceptions.InstanceNotFound) as raised:
        getattr(shared_harness.driver, method)(UNKNOWN_UUID, *OPERATIONS[method])
    assert raised.value.instance_uuid == UNKNOWN_UUID


@pytest.mark.parametrize("method", sorted(OPERATIONS))
def test_power_operations_refuse_a_malformed_uuid(shared_harness, method):
    with pytest.raises(ValueError, match="uuid"):
        getattr(shared_harness.driver, method)("../../etc", *OPERATIONS[method])


# -- lifecycle events ---------------------------------------------------------------------------


class TimedCaster(RecordingCaster):
    """Records when each cast was made, and lets a test wait for one."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.arrived = threading.Condition()

    def cast(self, topic, method, args, request_id):
        with self.arrived:
            message_id = super().cast(topic, method, args, request_id)
            self.times.append(time.monotonic())
            self.arrived.notify_all()
        return message_id


def test_a_guest_that_powers_itself_off_is_reported_within_two_seconds(shared_harness):
    """Measured from libvirt's first event about it (seen on a connection of the test's own)
    to the manager's report, with no periodic sync running: the event path alone.

    QEMU's guest reports its poweroff first ("shutdown": the domain is shutting down, which
    the agent reports as stopped), and the domain shuts off ("stopped") once QEMU has exited,
    a second or two later under TCG; the first of them starts the clock."""
    poweroff_after = 2
    guest = _spawn(
        shared_harness, f"#!/bin/sh\n#kubenova-guest: poweroff-after={poweroff_after}\n".encode()
    )
    guest.require_os()
    stopped_at: list[float] = []
    seen = threading.Event()

    def on_event(domain_uuid: str, event: int, detail: int) -> None:
        del detail
        if domain_uuid != guest.uuid:
            return
        name = connection.LIFECYCLE_EVENT_NAMES.get(event)
        if name in ("shutdown", "stopped"):
            stopped_at.append(time.monotonic())
        if name == "stopped":
            seen.set()

    watcher = connection.Connection(shared_harness.uri)
    assert watcher.watch_lifecycle(on_event)
    watcher.open()
    caster = TimedCaster()
    compute = manager.ComputeManager(
        shared_harness.driver.get_host_info().hostname,
        shared_harness.driver,
        conductor_rpcapi.ConductorAPI(caster),
    )
    # What the conductor knows already (the build's report), so the event's report is the
    # change, as in a running agent.
    compute.sync_power_states()
    caster.casts.clear()
    caster.times.clear()
    assert compute.start_lifecycle_events(), "the driver delivers lifecycle events"
    try:
        if guest.real:
            _switch_honoured(guest, f"poweroff-after={poweroff_after}")
        else:
            # The simulated guest powers itself off: from libvirt's side, its domain shuts
            # down without the driver asking.
            domain = shared_harness.raw_domain(guest.uuid)
            assert domain is not None
            domain.shutdown()
        assert seen.wait(GUEST_BOOT_TIMEOUT), "libvirt never said the guest stopped"

        def reported() -> bool:
            return any(
                cast.args["instance_uuid"] == guest.uuid and cast.args["vm_state"] == "stopped"
                for cast in caster.casts
            )

        with caster.arrived:
            assert caster.arrived.wait_for(reported, 10 * EVENT_REPORT_BOUND_S)
            index = next(
                i
                for i, cast in enumerate(caster.casts)
                if cast.args["instance_uuid"] == guest.uuid and cast.args["vm_state"] == "stopped"
            )
            latency = caster.times[index] - stopped_at[0]
    finally:
        compute.stop_lifecycle_events()
        watcher.close()
    cast = caster.casts[index]
    assert (cast.method, cast.args["power_state"]) == ("instance_update", "shutdown")
    print(f"{shared_harness.kind}: event-to-report latency {latency * 1000:.1f} ms")
    assert latency < EVENT_REPORT_BOUND_S
    if guest.real:
        assert "kubenova-guest: powering off" in guest.console()


def test_events_stop_when_the_listener_is_removed(shared_harness):
    heard: list[str] = []
    instance = shared_harness.instance(hostname=f"quiet-{uuid.uuid4().hex[:6]}")
    assert shared_harness.driver.set_lifecycle_listener(heard.append)
    shared_harness.driver.spawn(instance)
    deadline = time.monotonic() + 10
    while instance.uuid not in heard and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.uuid in heard, "the start of the domain was heard"
    assert shared_harness.driver.set_lifecycle_listener(None) is False
    heard.clear()
    shared_harness.driver.pause(instance.uuid)
    time.sleep(0.5)
    assert heard == []
