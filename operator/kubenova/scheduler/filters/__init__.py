"""Host filters: one module each, enabled and ordered by configuration.

A filter answers one question about one host, ``host_passes(host_state, spec)``,
and when the answer is no it says why in a few words that the scheduler counts
("insufficient memory"), so "no valid host" always comes with its reasons.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime

from kubenova.scheduler.host_state import HostState, RequestSpec


@dataclasses.dataclass(frozen=True)
class FilterResult:
    passed: bool
    reason: str = ""

    @classmethod
    def ok(cls) -> FilterResult:
        return cls(True)

    @classmethod
    def reject(cls, reason: str) -> FilterResult:
        return cls(False, reason)


@dataclasses.dataclass(frozen=True)
class FilterContext:
    """What every filter may consult besides the host and the request."""

    now: datetime.datetime
    service_down_time_s: int = 60


class BaseHostFilter(abc.ABC):
    """One question about a host; subclasses set ``name`` and implement host_passes."""

    name: str = ""

    @abc.abstractmethod
    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        """Whether ``host_state`` can take ``spec``; the reason when it cannot."""


def load_filters(names: tuple[str, ...]) -> list[BaseHostFilter]:
    """Instantiate the enabled filters in their configured order."""
    from kubenova.scheduler.filters import compute_filter, resource_filter

    available: dict[str, type[BaseHostFilter]] = {
        cls.name: cls for cls in (compute_filter.ComputeFilter, resource_filter.ResourceFilter)
    }
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"unknown scheduler filters {unknown}; known: {sorted(available)}")
    return [available[name]() for name in names]
