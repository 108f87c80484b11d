"""Per-host allocation ratios set on a Hypervisor's spec, on a real database: the handler records
them with the rest of the spec, a heartbeat records a spec set before the host's first one,
claims are held to them at once, and the status says what is in force and when the host is
over capacity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kubenova.conductor import hypervisor_spec
from kubenova.conductor.service import Conductor
from kubenova.db import engine as db_engine
from tests.integration.conductor.fakes import node_report
from tests.integration.db.helpers import claim, make_instance, node
from tests.support import RecordingKube

pytestmark = pytest.mark.integration


def _ratios(session_factory: db_engine.SessionFactory, host: str = "h1") -> tuple[float, ...]:
    recorded = node(session_factory, host)
    return (
        recorded.cpu_allocation_ratio,
        recorded.ram_allocation_ratio,
        recorded.disk_allocation_ratio,
    )


def _set_spec(
    kube: RecordingKube, conductor: Conductor, spec: dict[str, Any], host: str = "h1"
) -> None:
    """An administrator's change to the object, and the handler kopf runs for it."""
    kube.hypervisors[host]["spec"] = dict(spec)
    conductor.hypervisors.hypervisor_changed(host, {}, dict(spec))


def _over_capacity(kube: RecordingKube, host: str = "h1") -> dict[str, Any]:
    conditions = kube.hypervisors[host]["status"]["conditions"]
    [condition] = [c for c in conditions if c["type"] == "OverCapacity"]
    return dict(condition)


def test_setting_ratios_records_them_says_so_in_the_status_and_drops_cached_host_views(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report())  # 8 vCPUs, 8 GiB, 100 GiB
    generation = node(db_session_factory, "h1").generation
    hosts_changed: list[bool] = []
    conductor.hypervisors.on_hosts_changed = lambda: hosts_changed.append(True)

    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 1.0, "memory": 1.5}})

    assert _ratios(db_session_factory) == (1.0, 1.5, 1.0)
    assert node(db_session_factory, "h1").generation == generation + 1
    assert hosts_changed == [True]
    status = kube.hypervisors["h1"]["status"]
    assert status["allocationRatios"] == {"cpu": 1.0, "memory": 1.5, "disk": 1.0}
    assert (status["vcpus"]["allocatable"], status["memoryMiB"]["allocatable"]) == (8, 12288)

    # The same spec again (kopf's resume handler at a restart) changes nothing recorded.
    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 1.0, "memory": 1.5}})
    assert node(db_session_factory, "h1").generation == generation + 1


def test_removing_a_ratio_puts_novas_default_back(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 1.0, "disk": 2.0}})
    assert _ratios(db_session_factory) == (1.0, 1.0, 2.0)

    _set_spec(kube, conductor, {"allocationRatios": {"disk": 2.0}})
    assert _ratios(db_session_factory) == (4.0, 1.0, 2.0)

    _set_spec(kube, conductor, {"disabled": False})
    assert _ratios(db_session_factory) == (4.0, 1.0, 1.0)
    assert kube.hypervisors["h1"]["status"]["allocationRatios"] == {
        "cpu": 4.0,
        "memory": 1.0,
        "disk": 1.0,
    }


def test_ratios_and_disabling_are_recorded_together(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    _set_spec(
        kube,
        conductor,
        {"disabled": True, "disabledReason": "maint", "allocationRatios": {"cpu": 2.0}},
    )
    recorded = node(db_session_factory, "h1")
    assert (recorded.disabled, recorded.cpu_allocation_ratio) == (True, 2.0)
    status = kube.hypervisors["h1"]["status"]
    assert (status["disabled"], status["allocationRatios"]["cpu"]) == (True, 2.0)


def test_a_ratio_no_host_can_have_leaves_the_recorded_ratios_and_the_rest_of_the_spec_applies(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 2.0}})

    _set_spec(kube, conductor, {"disabled": True, "allocationRatios": {"cpu": 0}})

    assert _ratios(db_session_factory) == (2.0, 1.0, 1.0)
    assert node(db_session_factory, "h1").disabled is True
    assert "spec.allocationRatios.cpu: must be greater than 0" in caplog.text


def test_a_claim_is_held_to_a_new_ratio_at_once(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report())  # 8 vCPUs
    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 0.25}})  # 2 allocatable

    placed = [claim(db_session_factory, make_instance(db_session_factory), "h1") for _ in range(3)]

    assert [bool(result) for result in placed] == [True, True, False]
    assert placed[2].refusal == "insufficient vcpu"


def test_lowering_a_ratio_below_what_is_placed_is_allowed_and_the_host_says_it_is_over_capacity(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report())  # 8 vCPUs
    for _ in range(3):
        assert claim(db_session_factory, make_instance(db_session_factory), "h1")
    conductor.hypervisors.check_hypervisors()
    assert _over_capacity(kube)["status"] == "False"

    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 0.25}})  # 2 allocatable, 3 used

    recorded = node(db_session_factory, "h1")
    assert (recorded.cpu_allocation_ratio, recorded.vcpus_used) == (0.25, 3)
    conductor.hypervisors.check_hypervisors()
    over = _over_capacity(kube)
    assert (over["status"], over["reason"]) == ("True", "UsageAboveAllocatable")
    assert "vcpus 3 used of 2 allocatable" in over["message"]
    assert kube.hypervisors["h1"]["status"]["vcpus"]["display"] == "3/2"
    assert not claim(db_session_factory, make_instance(db_session_factory), "h1")

    _set_spec(kube, conductor, {})  # the default ratio again: 32 allocatable
    conductor.hypervisors.check_hypervisors()
    assert _over_capacity(kube)["status"] == "False"
    assert claim(db_session_factory, make_instance(db_session_factory), "h1")


def test_ratios_set_before_the_hosts_first_heartbeat_reach_the_row_it_creates(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    kube.add_hypervisor("h1")
    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 2.0, "memory": 1.5}})
    assert kube.calls["patch_hypervisor_status"] == 0  # no row yet: nothing to say

    conductor.hypervisors.compute_node_report(node_report())

    assert _ratios(db_session_factory) == (2.0, 1.5, 1.0)
    status = kube.hypervisors["h1"]["status"]
    assert status["allocationRatios"] == {"cpu": 2.0, "memory": 1.5, "disk": 1.0}
    assert status["vcpus"]["allocatable"] == 16


def _change_while_read(
    kube: RecordingKube, conductor: Conductor, spec: dict[str, Any]
) -> Callable[[str, dict[str, str]], dict[str, Any]]:
    """An ensure_hypervisor that returns the object as it was, then lets an administrator
    change it and the handler run before the heartbeat records anything."""
    read = kube.ensure_hypervisor

    def ensure_then_change(host: str, labels: dict[str, str]) -> dict[str, Any]:
        before = read(host, labels)
        _set_spec(kube, conductor, spec, host)
        return before

    return ensure_then_change


def test_a_change_handled_while_the_first_heartbeat_reads_the_object_is_what_it_records(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ensure = _change_while_read(kube, conductor, {"allocationRatios": {"cpu": 2.0}})
    monkeypatch.setattr(kube, "ensure_hypervisor", ensure)

    # The handler finds no row (the heartbeat has not made it); the heartbeat read the
    # object as it was before the change.
    conductor.hypervisors.compute_node_report(node_report())

    assert _ratios(db_session_factory) == (2.0, 1.0, 1.0)
    assert kube.hypervisors["h1"]["status"]["allocationRatios"]["cpu"] == 2.0


def test_a_change_handled_while_the_first_heartbeat_records_the_host_is_read_at_the_next(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = hypervisor_spec.apply_to_report

    def change_then_record(session: Any, host: str, spec: Any, reported: Any) -> Any:
        # The heartbeat's row is not committed: the handler finds none and records nothing.
        _set_spec(kube, conductor, {"allocationRatios": {"memory": 1.5}}, host)
        return record(session, host, spec, reported)

    monkeypatch.setattr(hypervisor_spec, "apply_to_report", change_then_record)
    conductor.hypervisors.compute_node_report(node_report())
    monkeypatch.undo()
    assert _ratios(db_session_factory) == (4.0, 1.0, 1.0)

    # Well within the resync interval, the next heartbeat reads the object again.
    conductor.hypervisors.compute_node_report(node_report())

    assert kube.calls["ensure_hypervisor"] == 2
    assert _ratios(db_session_factory) == (4.0, 1.5, 1.0)


def test_a_heartbeat_never_records_a_spec_older_than_the_handlers(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    _set_spec(kube, conductor, {"allocationRatios": {"cpu": 1.0}})
    ensure = _change_while_read(kube, conductor, {"allocationRatios": {"cpu": 8.0}})
    monkeypatch.setattr(kube, "ensure_hypervisor", ensure)
    monkeypatch.setattr(conductor.hypervisors, "_hypervisor_read_at", {})  # a resync is due

    # It read {"cpu": 1.0}; the handler recorded 8.0 before the heartbeat's transaction.
    conductor.hypervisors.compute_node_report(node_report())

    assert _ratios(db_session_factory) == (8.0, 1.0, 1.0)
