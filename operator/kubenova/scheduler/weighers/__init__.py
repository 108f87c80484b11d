"""Host weighers: one module each, each scaled by its multiplier.

Each weigher gives every host a raw weight; the scheduler normalises the raw
weights of one weigher to 0..1 across the candidate hosts (as Nova does), multiplies
by the weigher's multiplier and adds them up. The heaviest host wins. A positive
multiplier favours a high raw weight, a negative one a low raw weight, and 0 turns the
weigher off. Because each weigher is normalised first, a multiplier says how much one
weigher counts against the others, whatever the units of its raw weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from kubenova.scheduler.weighers import (
    build_failure_weigher,
    cpu_weigher,
    disk_weigher,
    num_instances_weigher,
    ram_weigher,
    server_group_soft_affinity_weigher,
    server_group_soft_anti_affinity_weigher,
)
from kubenova.scheduler.weighers.base import DEFAULT_MULTIPLIERS, BaseWeigher, normalize

__all__ = [
    "DEFAULT_MULTIPLIERS",
    "DEFAULT_WEIGHERS",
    "BaseWeigher",
    "available_weighers",
    "load_weighers",
    "normalize",
]

#: Every weigher, in the order they are applied (Nova's default ``weight_classes`` is
#: ``all_weighers``). The order does not change the result, only the cost.
DEFAULT_WEIGHERS: Final[tuple[str, ...]] = (
    "RAMWeigher",
    "CPUWeigher",
    "DiskWeigher",
    "ServerGroupSoftAffinityWeigher",
    "ServerGroupSoftAntiAffinityWeigher",
    "BuildFailureWeigher",
    "NumInstancesWeigher",
)


def available_weighers() -> dict[str, type[BaseWeigher]]:
    """Every weigher Kubenova has, by name."""
    classes: tuple[type[BaseWeigher], ...] = (
        ram_weigher.RAMWeigher,
        cpu_weigher.CPUWeigher,
        disk_weigher.DiskWeigher,
        server_group_soft_affinity_weigher.ServerGroupSoftAffinityWeigher,
        server_group_soft_anti_affinity_weigher.ServerGroupSoftAntiAffinityWeigher,
        build_failure_weigher.BuildFailureWeigher,
        num_instances_weigher.NumInstancesWeigher,
    )
    return {cls.name: cls for cls in classes}


def load_weighers(
    names: Sequence[str] = DEFAULT_WEIGHERS, multipliers: Mapping[str, float] | None = None
) -> list[BaseWeigher]:
    """Instantiate the named weighers, any subset in any order.

    ``multipliers`` maps a weigher's name to its multiplier; a weigher without one gets
    its default from :data:`DEFAULT_MULTIPLIERS`. A multiplier may name a known weigher
    that is not enabled (a configuration can carry every multiplier), but an unknown name
    in either argument raises ValueError, so a typo does not silently change nothing.
    """
    available = available_weighers()
    given = dict(multipliers or {})
    unknown = [name for name in (*names, *given) if name not in available]
    if unknown:
        raise ValueError(f"unknown scheduler weighers {unknown}; known: {sorted(available)}")
    return [available[name](given.get(name)) for name in names]
