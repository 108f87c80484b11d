"""The agent reports where a guest's consoles listen whenever it reports the guest, and again
whenever they move (QEMU started anew)."""

from __future__ import annotations

import pytest

from kubenova.rpc import conductor_rpcapi, envelope, payloads
from kubenova_agent import manager
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState
from tests.support import RecordingCaster
from tests.unit.agent.scripted_driver import ScriptedDriver
from tests.unit.agent.test_compute_manager import UUID, _instance

FIRST = virt_driver.ConsolePorts(vnc_port=5900, spice_tls_port=5901)
AFTER_RESTART = virt_driver.ConsolePorts(vnc_port=5902, spice_tls_port=5903)


@pytest.fixture
def parts():
    caster, driver = RecordingCaster(), ScriptedDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    driver.console_ports[UUID] = FIRST
    return compute, driver, caster


def _updates(caster: RecordingCaster) -> list[payloads.InstanceUpdate]:
    return [
        payloads.InstanceUpdate.model_validate(c.args)
        for c in caster.casts
        if c.method == "instance_update"
    ]


def test_the_build_report_says_where_the_consoles_are(parts):
    compute, _, caster = parts
    compute.build_and_run_instance(_instance(), "req-1")
    (update,) = _updates(caster)
    assert update.console_ports == payloads.ConsolePorts(vnc_port=5900, spice_tls_port=5901)
    assert payloads.console_ports_reported(update)


def test_the_sync_reports_ports_that_moved_once(parts):
    compute, driver, caster = parts
    compute.build_and_run_instance(_instance(), "req-1")
    caster.casts.clear()
    compute.sync_power_states()
    assert caster.casts == []
    driver.console_ports[UUID] = AFTER_RESTART  # QEMU started again behind the agent's back
    compute.sync_power_states()
    compute.sync_power_states()
    (update,) = _updates(caster)
    assert update.console_ports == payloads.ConsolePorts(vnc_port=5902, spice_tls_port=5903)


def test_a_guest_that_stopped_is_reported_with_no_console(parts):
    compute, driver, caster = parts
    compute.build_and_run_instance(_instance(), "req-1")
    caster.casts.clear()
    driver.domains[UUID] = PowerState.SHUTDOWN
    compute.sync_power_states()
    (update,) = _updates(caster)
    assert update.console_ports is None
    # Said explicitly, so the conductor clears the columns.
    assert payloads.console_ports_reported(
        payloads.InstanceUpdate.model_validate_json(update.model_dump_json())
    )


@pytest.mark.parametrize(
    ("method", "start"),
    [
        ("start_instance", PowerState.SHUTDOWN),
        ("reboot_instance", PowerState.RUNNING),
    ],
)
def test_an_operation_that_starts_qemu_reports_its_new_ports(parts, method, start):
    compute, driver, caster = parts
    driver.domains[UUID] = start
    driver.console_ports[UUID] = AFTER_RESTART
    args: dict[str, object] = {"instance_uuid": UUID}
    if method == "reboot_instance":
        args["reboot_type"] = "HARD"
    compute.handle(
        envelope.Envelope(request_id="req-op", method=method, args=args, sender="operator"), None
    )
    (cast,) = caster.casts
    finished = payloads.InstanceOperationFinished.model_validate(cast.args)
    assert finished.console_ports == payloads.ConsolePorts(vnc_port=5902, spice_tls_port=5903)


def test_an_operation_that_stops_the_guest_reports_no_console(parts):
    compute, driver, caster = parts
    driver.domains[UUID] = PowerState.RUNNING
    compute.handle(
        envelope.Envelope(
            request_id="req-op",
            method="stop_instance",
            args={"instance_uuid": UUID, "clean_shutdown": False},
            sender="operator",
        ),
        None,
    )
    (cast,) = caster.casts
    assert cast.args["console_ports"] is None
