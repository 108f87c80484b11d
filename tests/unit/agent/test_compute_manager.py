"""The compute manager's handlers, over a recording driver and a recording message bus."""

from __future__ import annotations

import pytest

from kubenova.exception import PermanentFailure
from kubenova.rpc import conductor_rpcapi, envelope, payloads
from kubenova_agent import exceptions, manager
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState
from tests.support import RecordingCaster
from tests.unit.agent.scripted_driver import ScriptedDriver

UUID = "6f1c1d9e-0000-4000-8000-000000000001"


def _instance() -> payloads.InstancePayload:
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
        user_data="#!/bin/sh\n",
    )


@pytest.fixture
def parts():
    caster, driver = RecordingCaster(), ScriptedDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    return compute, driver, caster


def _message(method: str, args: dict) -> envelope.Envelope:
    return envelope.Envelope(request_id="req-1", method=method, args=args, sender="operator")


def test_build_reports_only_the_result(parts):
    """The operator records "spawning" when it casts the build; the agent reports the end."""
    compute, driver, caster = parts
    compute.handle(
        _message("build_and_run_instance", {"instance": _instance().model_dump(mode="json")}),
        None,
    )
    assert driver.spawned == [UUID]
    updates = [c.args for c in caster.casts if c.method == "instance_update"]
    assert [(u["vm_state"], u["task_state"], u["power_state"]) for u in updates] == [
        ("active", None, "running"),
    ]
    assert updates[-1]["launched_at"] is not None
    assert {c.topic for c in caster.casts} == {"conductor"}


def test_sync_reports_an_address_once_when_it_appears(parts):
    compute, driver, caster = parts
    compute.build_and_run_instance(_instance(), "req-1")
    caster.casts.clear()
    compute.sync_power_states()
    assert caster.casts == []
    driver.addresses[UUID] = ["192.168.122.5"]
    compute.sync_power_states()
    compute.sync_power_states()
    assert caster.methods() == ["instance_update"]
    assert caster.casts[0].args["addresses"] == ["192.168.122.5"]


@pytest.mark.parametrize(
    ("error", "reason", "reschedulable"),
    [
        (exceptions.RescheduledBuildError(UUID, "libvirt said no"), "BuildFailed", True),
        (exceptions.BuildAbortedError(UUID, "checksum mismatch"), "BuildAborted", False),
    ],
)
def test_failed_build_is_reported_with_whether_it_can_be_rescheduled(
    parts, error, reason, reschedulable
):
    compute, driver, caster = parts
    driver.fail_with = error
    compute.build_and_run_instance(_instance(), "req-1")
    failure = caster.casts[-1]
    assert failure.method == "instance_build_failed"
    assert failure.args["reason"] == reason
    assert failure.args["reschedulable"] is reschedulable
    assert failure.args["message"] == error.reason


def test_terminate_twice_has_one_effect_and_reports_each_time(parts):
    compute, driver, caster = parts
    compute.build_and_run_instance(_instance(), "req-1")
    compute.terminate_instance(UUID, "req-2")
    compute.terminate_instance(UUID, "req-2")
    assert driver.domains == {}
    assert caster.methods()[-2:] == ["instance_terminated", "instance_terminated"]


def test_unknown_method_is_a_permanent_failure(parts):
    compute, _, _ = parts
    with pytest.raises(PermanentFailure, match="reboot_everything"):
        compute.handle(_message("reboot_everything", {}), None)


def test_compute_node_report_carries_capacity_and_instances(parts):
    compute, driver, caster = parts
    driver.domains["u-1"] = PowerState.RUNNING
    compute.report_compute_node()
    topic, method, args, _ = caster.casts[0]
    assert (topic, method) == ("conductor", "compute_node_report")
    assert (args["vcpus"], args["memory_mib"], args["instance_uuids"]) == (4, 8192, ["u-1"])


def test_sync_reports_a_power_change_once(parts):
    compute, driver, caster = parts
    compute.build_and_run_instance(_instance(), "req-1")
    caster.casts.clear()
    driver.domains[UUID] = PowerState.SHUTDOWN
    compute.sync_power_states()
    compute.sync_power_states()
    assert [(a["vm_state"], a["power_state"]) for _, _, a, _ in caster.casts] == [
        ("stopped", "shutdown")
    ]


class BulkOnlyDriver(ScriptedDriver):
    """Answers only for all instances at once, as a driver that lists its host does."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    def list_instance_states(self) -> dict[str, virt_driver.InstanceState]:
        self.listings += 1
        return {
            instance_uuid: virt_driver.InstanceState(
                power, tuple(self.addresses.get(instance_uuid, []))
            )
            for instance_uuid, power in sorted(self.domains.items())
        }

    def get_power_state(self, instance_uuid: str) -> PowerState:
        raise AssertionError("the sync must not ask instance by instance")

    def get_addresses(self, instance_uuid: str) -> list[str]:
        raise AssertionError("the sync must not ask instance by instance")


def test_sync_lists_the_host_once_rather_than_asking_per_instance():
    caster, driver = RecordingCaster(), BulkOnlyDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    driver.domains = {"u-1": PowerState.RUNNING, "u-2": PowerState.PAUSED}
    compute.sync_power_states()
    assert driver.listings == 1
    assert sorted((a["instance_uuid"], a["vm_state"]) for _, _, a, _ in caster.casts) == [
        ("u-1", "active"),
        ("u-2", "paused"),
    ]


def test_reports_about_an_instance_found_on_the_host_share_one_request_id():
    # An instance this agent did not build (it ran before a restart) gets one request id for
    # all its reports, so its history reads as one request.
    caster, driver = RecordingCaster(), ScriptedDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    driver.domains["u-1"] = PowerState.RUNNING
    compute.sync_power_states()
    driver.domains["u-1"] = PowerState.SHUTDOWN
    compute.sync_power_states()
    assert caster.methods() == ["instance_update", "instance_update"]
    first, second = (cast.request_id for cast in caster.casts)
    assert first == second
    assert first.startswith("req-")
