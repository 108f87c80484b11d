"""The availability zones: the zones the Hypervisors are in, as the scheduler places instances
(a host's ``topology.kubernetes.io/zone`` label, else "nova"). DescribeAvailabilityZones lists
them and RunInstances refuses a Placement.AvailabilityZone that is none of them, from this one
reading, so a zone listed is a zone a launch may name and no other is.
"""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import errors
from kubenova.scheduler import host_state

_UP = "up"
PLACEMENT_ZONE = "Placement.AvailabilityZone"


def zone_of(hypervisor: dict[str, Any]) -> str:
    """The zone a Hypervisor is in, by the rule of the scheduler's HostState."""
    labels = hypervisor["metadata"].get("labels") or {}
    return str(
        labels.get(host_state.AVAILABILITY_ZONE_LABEL) or host_state.DEFAULT_AVAILABILITY_ZONE
    )


def availability(hypervisors: list[dict[str, Any]]) -> dict[str, bool]:
    """Every zone a Hypervisor is in, and whether it is available: one of its hosts is up."""
    zones: dict[str, bool] = {}
    for hypervisor in hypervisors:
        up = (hypervisor.get("status") or {}).get("state") == _UP
        zone = zone_of(hypervisor)
        zones[zone] = zones.get(zone, False) or up
    return zones


def require_known(zone: str, hypervisors: list[dict[str, Any]]) -> None:
    """Refuse, in EC2's words, a zone no Hypervisor is in; a zone with hosts passes whether
    or not they have room (that is the capacity check's to say)."""
    known = availability(hypervisors)
    if zone in known:
        return
    listed = ", ".join(sorted(known)) or "none: no hypervisor has registered"
    raise errors.Ec2Error(
        errors.INVALID_PARAMETER_VALUE,
        f"Invalid availability zone: [{zone}] (parameter {PLACEMENT_ZONE}; the zones are {listed})",
    )
