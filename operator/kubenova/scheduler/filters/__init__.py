"""Host filters: one module each, enabled and ordered by configuration.

A filter answers one question about one host, ``host_passes(host_state, spec)``,
and when the answer is no it says why in a few words that the scheduler counts
("insufficient memory"), so "no valid host" always comes with its reasons. A host is
counted once, under the first filter that rejects it, so cheap and common rejections
(down, already tried, wrong zone) go first.

Filters are called once per host and request: keep ``host_passes`` free of I/O and of
allocations that matter (return the shared :data:`PASS` and module-level rejections).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
from collections.abc import Sequence
from typing import Final

from kubenova.scheduler.host_state import HostState, RequestSpec

#: The canonical order of the enabled filters (Nova's ``enabled_filters``): liveness and
#: reschedules first because they are the cheapest and reject whole hosts regardless of the
#: request, then placement, room, fit, and the server group rules last because they depend
#: on the other members.
DEFAULT_FILTERS: Final[tuple[str, ...]] = (
    "ComputeFilter",
    "IgnoreHostsFilter",
    "AvailabilityZoneFilter",
    "ResourceFilter",
    "HostLabelsFilter",
    "ImagePropertiesFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
)


@dataclasses.dataclass(frozen=True)
class FilterResult:
    passed: bool
    reason: str = ""

    @classmethod
    def ok(cls) -> FilterResult:
        return PASS

    @classmethod
    def reject(cls, reason: str) -> FilterResult:
        return cls(False, reason)


#: The one "passed" result; results are immutable, so every filter can share it.
PASS: Final = FilterResult(True)


@dataclasses.dataclass(frozen=True)
class FilterContext:
    """What every filter may consult besides the host and the request."""

    now: datetime.datetime
    service_down_time_s: int = 60


class BaseHostFilter(abc.ABC):
    """One question about a host; subclasses set ``name`` and implement host_passes.

    ``RUN_ON_FORCED_HOST`` (like Nova's ``RUN_ON_REBUILD``) says whether the filter still
    applies when an administrator forces the host: only the checks that protect the host
    itself (it is alive, it has room, the build did not already fail there) do.
    """

    name: str = ""
    RUN_ON_FORCED_HOST: bool = False

    @abc.abstractmethod
    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        """Whether ``host_state`` can take ``spec``; the reason when it cannot."""


def available_filters() -> dict[str, type[BaseHostFilter]]:
    """Every filter Kubenova has, by name."""
    # Imported here: the filter modules import this package for the base class.
    from kubenova.scheduler.filters import (
        availability_zone_filter,
        compute_filter,
        host_labels_filter,
        ignore_hosts_filter,
        image_properties_filter,
        resource_filter,
        server_group_affinity_filter,
        server_group_anti_affinity_filter,
    )

    classes: tuple[type[BaseHostFilter], ...] = (
        compute_filter.ComputeFilter,
        ignore_hosts_filter.IgnoreHostsFilter,
        availability_zone_filter.AvailabilityZoneFilter,
        resource_filter.ResourceFilter,
        host_labels_filter.HostLabelsFilter,
        image_properties_filter.ImagePropertiesFilter,
        server_group_anti_affinity_filter.ServerGroupAntiAffinityFilter,
        server_group_affinity_filter.ServerGroupAffinityFilter,
    )
    return {cls.name: cls for cls in classes}


def load_filters(names: Sequence[str] = DEFAULT_FILTERS) -> list[BaseHostFilter]:
    """Instantiate the enabled filters in their configured order; ValueError names any
    unknown one."""
    available = available_filters()
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"unknown scheduler filters {unknown}; known: {sorted(available)}")
    return [available[name]() for name in names]
