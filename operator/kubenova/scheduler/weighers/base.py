"""What every host weigher is made of: the base class, the default multipliers and the
normalisation of raw weights to 0..1."""

from __future__ import annotations

import abc
import types
from collections.abc import Mapping
from typing import Final

from kubenova.scheduler.host_state import HostState, RequestSpec

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
