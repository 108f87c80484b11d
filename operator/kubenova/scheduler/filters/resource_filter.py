"""ResourceFilter: the host has room for the flavor's vCPU, memory and disk.

Room is capacity times the allocation ratio, less what is reserved for the host,
less what claims already hold (Nova's CoreFilter, RamFilter and DiskFilter, which
placement replaced). The claim re-checks this in the database, so a stale view can
only make the scheduler try a host that then refuses, never overcommit one.
"""

from __future__ import annotations

import logging

from kubenova.scheduler.filters import BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)


class ResourceFilter(BaseHostFilter):
    name = "ResourceFilter"

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
            return FilterResult.reject("insufficient memory")
        if host_state.free_vcpus < spec.vcpus:
            return FilterResult.reject("insufficient vcpu")
        if host_state.free_disk_gib < spec.disk_gib:
            return FilterResult.reject("insufficient disk")
        return FilterResult.ok()
