"""ResourceFilter: the host has room for the flavor's vCPU, memory and disk.

Room is what is allocatable (:func:`kubenova.placement.allocatable`: capacity less what is
reserved for the host, times the allocation ratio) less what claims already hold (Nova's
CoreFilter, RamFilter and DiskFilter, which placement replaced). The claim re-checks this in
the database, so a stale view can only make the scheduler try a host that then refuses, never
overcommit one.
"""

from __future__ import annotations

import logging
from typing import Final

from kubenova import placement
from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

NO_MEMORY: Final = FilterResult.reject(placement.REFUSED_NO_MEMORY)
NO_VCPU: Final = FilterResult.reject(placement.REFUSED_NO_VCPU)
NO_DISK: Final = FilterResult.reject(placement.REFUSED_NO_DISK)


class ResourceFilter(BaseHostFilter):
    """Reject a host without room, naming the first missing resource (memory, then vCPU,
    then disk). Applies to a forced host too: placement claims on it all the same."""

    name = "ResourceFilter"
    RUN_ON_FORCED_HOST = True

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        if host_state.free_memory_mib < spec.memory_mib:
            LOG.debug(
                "%s has %.0f MiB free, %d wanted",
                host_state.host,
                host_state.free_memory_mib,
                spec.memory_mib,
            )
            return NO_MEMORY
        if host_state.free_vcpus < spec.vcpus:
            LOG.debug(
                "%s has %.1f vCPUs free, %d wanted",
                host_state.host,
                host_state.free_vcpus,
                spec.vcpus,
            )
            return NO_VCPU
        if host_state.free_disk_gib < spec.disk_gib:
            LOG.debug(
                "%s has %.0f GiB free, %d wanted",
                host_state.host,
                host_state.free_disk_gib,
                spec.disk_gib,
            )
            return NO_DISK
        return PASS
