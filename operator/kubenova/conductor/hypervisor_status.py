"""A Hypervisor's status as a projection of its compute node record: state, versions, the
disabled flag, the allocation ratios in force, each resource's capacity, allocatable amount
and usage, and whether usage is over what is allocatable (the ``OverCapacity`` condition).

Pure: the conductor's heartbeat handling and its periodic check both build status here, and
decide here whether a change is worth a write before the next refresh.
"""

from __future__ import annotations

import datetime
from typing import Any, NamedTuple

from kubenova import placement
from kubenova.conductor import instance_status
from kubenova.db import api as db_api
from kubenova.db import models
from kubenova.rpc import payloads

# What a heartbeat refreshes on its own schedule (see only_refreshed): these fields, and the
# usage figures of each resource. Anything else (state, capacity, allocatable, versions) is
# written as soon as it changes.
_HEARTBEAT_REFRESH_FIELDS = frozenset({"lastHeartbeat", "runningInstances"})
_USAGE_FIELDS = frozenset({"vcpus", "memoryMiB", "diskGiB"})
_USAGE_FIGURES = frozenset({"used", "display"})
# The resources of a status, in the order a refusal names them (memory, then vCPU, then disk).
_RESOURCES = ("memoryMiB", "vcpus", "diskGiB")

#: True while claims hold more of some resource than is allocatable: an administrator lowered
#: an allocation ratio below what is placed (Nova allows it), or the host reports less than
#: it did. No claim fits then, so the host takes no new instance until usage falls.
OVER_CAPACITY = "OverCapacity"


class Inventory(NamedTuple):
    """What a heartbeat records of its compute node, apart from liveness."""

    vcpus: int
    memory_mib: int
    disk_gib: int
    hypervisor_type: str
    qemu_version: str
    libvirt_version: str
    virt_type: str
    cpu_arch: str
    running_vms: int
    migration_uri: str | None = None
    console_address: str | None = None


def inventory(report: payloads.ComputeNodeReport) -> Inventory:
    return Inventory(
        report.vcpus,
        report.memory_mib,
        report.disk_gib,
        report.hypervisor_type,
        report.qemu_version,
        report.libvirt_version,
        report.virt_type,
        report.cpu_arch,
        len(report.instance_uuids),
        report.migration_uri,
        report.console_address,
    )


def _usage(capacity: int, reserved: int, ratio: float, used: int) -> dict[str, Any]:
    allocatable = int(placement.allocatable(capacity, reserved, ratio))
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "used": used,
        "display": f"{used}/{allocatable}",
    }


def usage_status(node: models.ComputeNode | db_api.ReportedNode) -> dict[str, Any]:
    """Capacity, allocatable and claimed usage of each resource, as the claims hold them, and
    the allocation ratios that make what is allocatable."""
    return {
        "allocationRatios": {
            "cpu": node.cpu_allocation_ratio,
            "memory": node.ram_allocation_ratio,
            "disk": node.disk_allocation_ratio,
        },
        "vcpus": _usage(node.vcpus, 0, node.cpu_allocation_ratio, node.vcpus_used),
        "memoryMiB": _usage(
            node.memory_mib,
            node.reserved_host_memory_mib,
            node.ram_allocation_ratio,
            node.memory_mib_used,
        ),
        "diskGiB": _usage(
            node.local_gb,
            node.reserved_host_disk_gib,
            node.disk_allocation_ratio,
            node.local_gb_used,
        ),
    }


def capacity_conditions(
    usage: dict[str, Any], previous: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """``previous`` conditions with ``OverCapacity`` said afresh from ``usage`` (as
    :func:`usage_status` builds it); its lastTransitionTime moves only when it flips."""
    over = []
    for resource in _RESOURCES:
        figures = usage.get(resource) or {}
        used, allocatable = figures.get("used", 0), figures.get("allocatable", 0)
        if used > allocatable:
            over.append(f"{resource} {used} used of {allocatable} allocatable")
    if over:
        condition = instance_status.condition(
            OVER_CAPACITY,
            True,
            "UsageAboveAllocatable",
            f"{'; '.join(over)}: no new instance is placed here until usage falls",
            previous,
        )
    else:
        condition = instance_status.condition(
            OVER_CAPACITY,
            False,
            "WithinAllocatable",
            "usage is within what is allocatable",
            previous,
        )
    return instance_status.merge_conditions(previous, [condition])


def is_over_capacity(status: dict[str, Any] | None) -> bool:
    """Whether ``status`` says its host is over capacity."""
    return any(
        condition.get("type") == OVER_CAPACITY and condition.get("status") == "True"
        for condition in (status or {}).get("conditions") or []
    )


def disabled_status(node: models.ComputeNode | db_api.ReportedNode) -> dict[str, Any]:
    return {"disabled": bool(node.disabled), "disabledReason": node.disabled_reason}


def reported_status(node: db_api.ReportedNode, now: datetime.datetime) -> dict[str, Any]:
    """The whole status of a host whose agent just reported (so it is up)."""
    return {
        "state": "up",
        "lastHeartbeat": instance_status.timestamp(now),
        "virtType": node.virt_type,
        "hypervisorType": node.hypervisor_type,
        "cpuArch": node.cpu_arch,
        "libvirtVersion": node.libvirt_version,
        "qemuVersion": node.hypervisor_version,
        "runningInstances": node.running_vms,
        **disabled_status(node),
        **usage_status(node),
    }


def heartbeat_written_within(status: dict[str, Any] | None, seconds: float) -> bool:
    """Whether ``status`` (as last written) carries a lastHeartbeat younger than ``seconds``."""
    written = instance_status.parse_timestamp((status or {}).get("lastHeartbeat"))
    now = datetime.datetime.now(datetime.UTC)
    return written is not None and (now - written).total_seconds() < seconds


def only_refreshed(previous: dict[str, Any], changes: dict[str, Any]) -> bool:
    """True when ``changes`` to a Hypervisor status touch only what a heartbeat refreshes."""

    def without_figures(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {key: item for key, item in value.items() if key not in _USAGE_FIGURES}

    return all(
        key in _HEARTBEAT_REFRESH_FIELDS
        or (key in _USAGE_FIELDS and without_figures(value) == without_figures(previous.get(key)))
        for key, value in changes.items()
    )
