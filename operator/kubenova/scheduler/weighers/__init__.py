"""Host weighers: one module each, each scaled by its multiplier.

Each weigher gives every host a raw weight; the scheduler normalises the raw
weights of one weigher to 0..1 across the candidate hosts (as Nova does), multiplies
by the weigher's multiplier and adds them up. The heaviest host wins. A positive
multiplier favours a high raw weight, a negative one a low raw weight, and 0 turns the
weigher off. Because each weigher is normalised first, a multiplier says how much one
weigher counts against the others, whatever the units of its raw weight.
"""

from __future__ import annotations

import abc
import types
from collections.abc import Mapping, Sequence
from typing import Final

from kubenova.scheduler.host_state import HostState, RequestSpec

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

#: Nova's defaults for ``[filter_scheduler] *_weight_multiplier``. A build failure
#: outweighs everything else together; the instance count is off unless configured.
DEFAULT_MULTIPLIERS: Final[Mapping[str, float]] = types.MappingProxyType(
    {
        "RAMWeigher": 1.0,
        "CPUWeigher": 1.0,
        "DiskWeigher": 1.0,
        "ServerGroupSoftAffinityWeigher": 1.0,
        "ServerGroupSoftAntiAffinityWeigher": 1.0,
        "BuildFailureWeigher": 1000000.0,
        "NumInstancesWeigher": 0.0,
    }
)


class BaseWeigher(abc.ABC):
    """One preference among hosts; subclasses set ``name`` and implement :meth:`weigh`.

    Without an explicit multiplier a weigher takes its default from
    :data:`DEFAULT_MULTIPLIERS` (1.0 for a weigher not listed there).
    """

    name: str = ""

    def __init__(self, multiplier: float | None = None) -> None:
        self.multiplier = (
            DEFAULT_MULTIPLIERS.get(self.name, 1.0) if multiplier is None else multiplier
        )

    @abc.abstractmethod
    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        """A raw weight; larger is better before the multiplier is applied."""


def normalize(values: list[float]) -> list[float]:
    """Scale to 0..1 (all equal values become 0, so they do not tip the balance)."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [0.0 for _ in values]
    span = high - low
    return [(value - low) / span for value in values]


def available_weighers() -> dict[str, type[BaseWeigher]]:
    """Every weigher Kubenova has, by name."""
    # Imported here: the weigher modules import this package for the base class.
    from kubenova.scheduler.weighers import (
        build_failure_weigher,
        cpu_weigher,
        disk_weigher,
        num_instances_weigher,
        ram_weigher,
        server_group_soft_affinity_weigher,
        server_group_soft_anti_affinity_weigher,
    )

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
