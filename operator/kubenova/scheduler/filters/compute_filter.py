"""ComputeFilter: the host's service is up and not disabled."""

from __future__ import annotations

import logging
from typing import Final

from kubenova import placement
from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

DISABLED: Final = FilterResult.reject(placement.REFUSED_DISABLED)
DOWN: Final = FilterResult.reject("down")


class ComputeFilter(BaseHostFilter):
    """Reject a disabled host ("disabled") and one whose agent has not reported within
    ``service_down_time`` ("down"). Applies to a forced host too: forcing a dead host
    would only turn into a failed build."""

    name = "ComputeFilter"
    RUN_ON_FORCED_HOST = True

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        if host_state.disabled:
            LOG.debug("%s is disabled: %s", host_state.host, host_state.disabled_reason)
            return DISABLED
        if not host_state.is_up(context.now, context.service_down_time_s):
            LOG.debug("%s is down (last seen %s)", host_state.host, host_state.last_seen_up)
            return DOWN
        return PASS
