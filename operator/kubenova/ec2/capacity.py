"""Whether the instances of a RunInstances request fit on the hosts, asked of the scheduler's
own filters before any Instance is made, so that a request the cluster cannot hold answers
EC2's ``InsufficientInstanceCapacity`` with the scheduler's explanation ("0/3 hosts: 2
insufficient vcpu, 1 down") instead of instances that fail later.

The hosts are the Hypervisors as the kube-apiserver shows them (the EC2 server reads nothing
else): their status carries what the scheduler decides on (allocatable and used vCPUs, memory
and disk, up or down, disabled, the agent's facts) and their labels the zone. The request is
the one the conductor will build from the Instance's spec, its Flavor and its Image
(:func:`kubenova.conductor.request_spec.build`), filtered by the default filters
(:data:`kubenova.scheduler.filters.DEFAULT_FILTERS`) with the scheduler's
:func:`~kubenova.scheduler.manager.filter_hosts`.

How many fit is a packing estimate: each host passing the filters takes one instance after
another, its usage growing by the flavor as the scheduler's HostManager grows it after a
claim, until the filters reject it. The answer is advisory: Instances made but not yet placed
are not in any host's usage yet, and the hosts change after the check; an instance that then
finds no host fails as it would have without the check.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from kubenova.conductor import request_spec
from kubenova.ec2 import errors
from kubenova.scheduler import filters as scheduler_filters
from kubenova.scheduler import host_manager
from kubenova.scheduler import manager as scheduler
from kubenova.scheduler.host_state import HostState, RequestSpec

_UP = "up"


def host_state(hypervisor: dict[str, Any], now: datetime.datetime) -> HostState:
    """The scheduler's view of one Hypervisor from its status.

    The status shows what is allocatable (capacity less what is reserved, times the
    allocation ratio, as the conductor writes it), so the state's capacity is that, with a
    ratio of 1 and nothing reserved. Up or down is the operator's own judgement (``state``,
    after its service down time), so an up host is seen as heard from ``now``.
    """
    status = hypervisor.get("status") or {}

    def figures(resource: str) -> tuple[int, int]:
        usage = status.get(resource) or {}
        return int(usage.get("allocatable") or 0), int(usage.get("used") or 0)

    vcpus, vcpus_used = figures("vcpus")
    memory_mib, memory_mib_used = figures("memoryMiB")
    disk_gib, disk_gib_used = figures("diskGiB")
    return HostState(
        host=str(hypervisor["metadata"]["name"]),
        vcpus=vcpus,
        vcpus_used=vcpus_used,
        memory_mib=memory_mib,
        memory_mib_used=memory_mib_used,
        disk_gib=disk_gib,
        disk_gib_used=disk_gib_used,
        cpu_allocation_ratio=1.0,
        ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0,
        disabled=bool(status.get("disabled")),
        disabled_reason=status.get("disabledReason"),
        last_seen_up=now if status.get("state") == _UP else None,
        num_instances=int(status.get("instances") or 0),
        labels={str(k): str(v) for k, v in (hypervisor["metadata"].get("labels") or {}).items()},
        cpu_arch=status.get("cpuArch"),
        hypervisor_type=status.get("hypervisorType"),
        virt_type=status.get("virtType"),
    )


def request(
    instance_spec: dict[str, Any], flavor: dict[str, Any], image: dict[str, Any]
) -> RequestSpec:
    """The request the conductor will place for an Instance of ``instance_spec``, from the
    Flavor and Image objects it names (no server group: RunInstances sets none)."""
    flavor_spec, image_spec = flavor["spec"], image.get("spec") or {}
    return request_spec.build(
        instance_uuid="",
        spec=instance_spec,
        flavor={
            "vcpus": int(flavor_spec["vcpus"]),
            "memory_mib": int(flavor_spec["memoryMiB"]),
            "disk_gib": int(flavor_spec["diskGiB"]),
            "extra_specs": dict(flavor_spec.get("extraSpecs") or {}),
        },
        image={
            "architecture": image_spec.get("architecture"),
            "hypervisor_type": image_spec.get("hypervisorType"),
        },
        server_group=None,
    )


def fitting(
    spec: RequestSpec, hosts: list[HostState], wanted: int, now: datetime.datetime
) -> tuple[int, str]:
    """How many instances of ``spec``, up to ``wanted``, the hosts would take, and the
    scheduler's explanation of why the next one would find no host (when fewer fit)."""
    filters = scheduler_filters.load_filters()
    context = scheduler_filters.FilterContext(now=now)
    # The scheduler's cached view, never reloaded: consume() adds each placed instance to
    # its host's usage.
    view = host_manager.HostManager(lambda: list(hosts), refresh_s=math.inf)
    passing, _ = scheduler.filter_hosts(spec, view.host_states(), filters, context)
    placed = 0
    for candidate in passing:
        state: HostState | None = candidate
        while (
            placed < wanted
            and state is not None
            and scheduler.filter_hosts(spec, [state], filters, context)[0]
        ):
            view.consume(spec, candidate.host)
            placed += 1
            state = next((s for s in view.host_states() if s.host == candidate.host), None)
    if placed >= wanted:
        return placed, ""
    _, rejections = scheduler.filter_hosts(spec, view.host_states(), filters, context)
    return placed, scheduler.explain(len(hosts), rejections)


def room(
    hypervisors: list[dict[str, Any]],
    instance_spec: dict[str, Any],
    flavor: dict[str, Any],
    image: dict[str, Any],
    minimum: int,
    maximum: int,
) -> int:
    """How many of ``maximum`` instances to make: as many as fit, up to ``maximum``;
    InsufficientInstanceCapacity, with the scheduler's explanation, when fewer than
    ``minimum`` fit."""
    now = datetime.datetime.now(datetime.UTC)
    hosts = [host_state(hypervisor, now) for hypervisor in hypervisors]
    spec = request(instance_spec, flavor, image)
    placed, explanation = fitting(spec, hosts, maximum, now)
    if placed >= minimum:
        return placed
    name = flavor["metadata"]["name"]
    zone = instance_spec.get("availabilityZone")
    where = f" in the availability zone {zone}" if zone else ""
    raise errors.Ec2Error(
        errors.INSUFFICIENT_INSTANCE_CAPACITY,
        f"There is not enough {name} capacity{where} for {minimum} instance(s) "
        f"(room for {placed}): {explanation}",
    )
