"""AvailabilityZoneFilter: the host is in the availability zone the request asks for.

A host's zone is its ``topology.kubernetes.io/zone`` label, or Nova's default zone "nova"
when it has none (see :attr:`HostState.availability_zone`). Zone names compare exactly,
as in Nova.
"""

from __future__ import annotations

import logging
from typing import Final

from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

WRONG_ZONE: Final = FilterResult.reject("availability zone")


class AvailabilityZoneFilter(BaseHostFilter):
    """Reject a host outside ``spec.availability_zone`` ("availability zone"); a request
    without a zone passes everywhere."""

    name = "AvailabilityZoneFilter"

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        wanted = spec.availability_zone
        if wanted is None:
            return PASS
        zone = host_state.availability_zone
        if zone != wanted:
            LOG.debug("%s is in zone %s, not %s", host_state.host, zone, wanted)
            return WRONG_ZONE
        return PASS
