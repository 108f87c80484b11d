"""ComputeFilter: the host's service is up and not disabled."""

from __future__ import annotations

import logging

from kubenova.scheduler.filters import BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)


class ComputeFilter(BaseHostFilter):
    name = "ComputeFilter"

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        if host_state.disabled:
            LOG.debug("%s is disabled: %s", host_state.host, host_state.disabled_reason)
            return FilterResult.reject("disabled")
        if not host_state.is_up(context.now, context.service_down_time_s):
            LOG.debug("%s is down (last seen %s)", host_state.host, host_state.last_seen_up)
            return FilterResult.reject("down")
        return FilterResult.ok()
