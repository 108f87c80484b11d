"""What a Hypervisor's status says of its capacity: what is allocatable under the host's own
allocation ratios, the ratios in force, and the OverCapacity condition."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kubenova.conductor import hypervisor_status
from kubenova.db import api as db_api
from kubenova.ec2 import capacity
from kubenova.scheduler.filters import FilterContext
from kubenova.scheduler.filters.resource_filter import ResourceFilter
from kubenova.scheduler.host_state import RequestSpec

LONG_AGO = "2020-01-01T00:00:00Z"


def _node(**overrides: Any) -> db_api.ReportedNode:
    values: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "vcpus": 8,
        "vcpus_used": 0,
        "memory_mib": 16384,
        "memory_mib_used": 0,
        "local_gb": 100,
        "local_gb_used": 0,
        "cpu_allocation_ratio": 4.0,
        "ram_allocation_ratio": 1.0,
        "disk_allocation_ratio": 1.0,
        "reserved_host_memory_mib": 1024,
        "reserved_host_disk_gib": 10,
        "hypervisor_type": "QEMU",
        "hypervisor_version": "8.2.2",
        "libvirt_version": "10.0.0",
        "virt_type": "kvm",
        "cpu_arch": "x86_64",
        "running_vms": 0,
        "disabled": False,
        "disabled_reason": None,
    }
    values.update(overrides)
    return db_api.ReportedNode(**values)


def _over_capacity(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    [condition] = [c for c in conditions if c["type"] == hypervisor_status.OVER_CAPACITY]
    return condition


def test_allocatable_follows_each_hosts_own_ratios_and_the_status_shows_them() -> None:
    usage = hypervisor_status.usage_status(
        _node(cpu_allocation_ratio=2.0, ram_allocation_ratio=1.5, disk_allocation_ratio=3.0)
    )
    assert usage["allocationRatios"] == {"cpu": 2.0, "memory": 1.5, "disk": 3.0}
    assert usage["vcpus"]["allocatable"] == 16  # 8 x 2.0
    assert usage["memoryMiB"]["allocatable"] == 23040  # (16384 - 1024) x 1.5
    assert usage["diskGiB"]["allocatable"] == 270  # (100 - 10) x 3.0
    assert usage["vcpus"]["display"] == "0/16"


def test_a_fractional_allocatable_amount_is_shown_rounded_down() -> None:
    usage = hypervisor_status.usage_status(_node(vcpus=3, cpu_allocation_ratio=1.5))
    assert usage["vcpus"]["allocatable"] == 4  # 4.5: a fifth vCPU never fits


def test_the_status_a_heartbeat_writes_carries_the_ratios() -> None:
    status = hypervisor_status.reported_status(
        _node(cpu_allocation_ratio=1.0), datetime.datetime.now(datetime.UTC)
    )
    assert status["allocationRatios"]["cpu"] == 1.0
    assert status["vcpus"]["allocatable"] == 8


def test_usage_above_what_a_lowered_ratio_allows_is_over_capacity_naming_the_resources() -> None:
    # 20 vCPUs were placed under the default ratio (32 allocatable); the ratio is now 2.0.
    usage = hypervisor_status.usage_status(
        _node(vcpus_used=20, memory_mib_used=4096, cpu_allocation_ratio=2.0)
    )
    condition = _over_capacity(hypervisor_status.capacity_conditions(usage, None))
    assert (condition["status"], condition["reason"]) == ("True", "UsageAboveAllocatable")
    assert "vcpus 20 used of 16 allocatable" in condition["message"]
    assert "memoryMiB" not in condition["message"]
    assert hypervisor_status.is_over_capacity({"conditions": [condition]})


def test_a_full_host_is_not_over_capacity() -> None:
    usage = hypervisor_status.usage_status(
        _node(vcpus_used=16, memory_mib_used=15360, local_gb_used=90, cpu_allocation_ratio=2.0)
    )
    condition = _over_capacity(hypervisor_status.capacity_conditions(usage, None))
    assert (condition["status"], condition["reason"]) == ("False", "WithinAllocatable")
    assert not hypervisor_status.is_over_capacity({"conditions": [condition]})


def test_the_condition_keeps_its_transition_time_until_it_flips_and_keeps_other_conditions() -> (
    None
):
    over = hypervisor_status.usage_status(_node(vcpus_used=20, cpu_allocation_ratio=2.0))
    previous = [
        {"type": "OverCapacity", "status": "True", "lastTransitionTime": LONG_AGO},
        {"type": "Other", "status": "True", "lastTransitionTime": LONG_AGO},
    ]

    still_over = hypervisor_status.capacity_conditions(over, previous)
    assert _over_capacity(still_over)["lastTransitionTime"] == LONG_AGO
    assert {c["type"] for c in still_over} == {"OverCapacity", "Other"}

    within = hypervisor_status.usage_status(_node(vcpus_used=16, cpu_allocation_ratio=2.0))
    flipped = _over_capacity(hypervisor_status.capacity_conditions(within, previous))
    assert flipped["status"] == "False"
    assert flipped["lastTransitionTime"] != LONG_AGO


def test_a_change_of_ratio_is_written_at_once_not_at_the_next_refresh() -> None:
    before = hypervisor_status.usage_status(_node())
    after = hypervisor_status.usage_status(_node(cpu_allocation_ratio=1.0))
    changes = {key: value for key, value in after.items() if before.get(key) != value}
    assert set(changes) == {"allocationRatios", "vcpus"}
    assert not hypervisor_status.only_refreshed(before, changes)


def _hypervisor(node: db_api.ReportedNode) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {
        "metadata": {"name": "h1", "labels": {}},
        "status": hypervisor_status.reported_status(node, now),
    }


def test_the_ec2_capacity_check_reading_the_status_follows_the_hosts_own_ratio() -> None:
    """The EC2 API sees hosts only through their status: its view must hold a host to the
    ratio the claims hold it to (what is allocatable, not the capacity)."""
    now = datetime.datetime.now(datetime.UTC)
    context = FilterContext(now=now)
    one_vcpu = RequestSpec("", 1, 512, 1)
    roomy = capacity.host_state(_hypervisor(_node(vcpus_used=8)), now)  # 32 allocatable
    assert ResourceFilter().host_passes(roomy, one_vcpu, context).passed
    lowered = capacity.host_state(_hypervisor(_node(vcpus_used=8, cpu_allocation_ratio=1.0)), now)
    result = ResourceFilter().host_passes(lowered, one_vcpu, context)
    assert (result.passed, result.reason) == (False, "insufficient vcpu")
    over = capacity.host_state(_hypervisor(_node(vcpus_used=9, cpu_allocation_ratio=1.0)), now)
    assert not ResourceFilter().host_passes(over, one_vcpu, context).passed
