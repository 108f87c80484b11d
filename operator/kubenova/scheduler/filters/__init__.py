"""Host filters: one module each, enabled and ordered by configuration.

A filter answers one question about one host, ``host_passes(host_state, spec)``,
and when the answer is no it says why in a few words that the scheduler counts
("insufficient memory"), so "no valid host" always comes with its reasons. A host is
counted once, under the first filter that rejects it, so cheap and common rejections
(down, already tried, wrong zone) go first.
The base class and results are in :mod:`kubenova.scheduler.filters.base`; this package is the
registry of the filters by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

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
from kubenova.scheduler.filters.base import (
    PASS,
    BaseHostFilter,
    FilterContext,
    FilterResult,
)

__all__ = [
    "DEFAULT_FILTERS",
    "PASS",
    "BaseHostFilter",
    "FilterContext",
    "FilterResult",
    "available_filters",
    "load_filters",
]

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


def available_filters() -> dict[str, type[BaseHostFilter]]:
    """Every filter Kubenova has, by name."""
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
