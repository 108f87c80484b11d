"""Host weighers: one module each, each scaled by its multiplier.

Each weigher gives every host a raw weight; the scheduler normalises the raw
weights of one weigher to 0..1 across the candidate hosts (as Nova does), multiplies
by the weigher's multiplier and adds them up. The heaviest host wins.
"""

from __future__ import annotations

import abc

from kubenova.scheduler.host_state import HostState, RequestSpec


class BaseWeigher(abc.ABC):
    name: str = ""

    def __init__(self, multiplier: float = 1.0) -> None:
        self.multiplier = multiplier

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
    return [(value - low) / (high - low) for value in values]


def load_weighers(names: tuple[str, ...], multipliers: dict[str, float]) -> list[BaseWeigher]:
    from kubenova.scheduler.weighers import ram_weigher

    available: dict[str, type[BaseWeigher]] = {cls.name: cls for cls in (ram_weigher.RAMWeigher,)}
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"unknown scheduler weighers {unknown}; known: {sorted(available)}")
    return [available[name](multipliers.get(name, 1.0)) for name in names]
