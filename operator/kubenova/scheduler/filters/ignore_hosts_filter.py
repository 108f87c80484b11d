"""IgnoreHostsFilter: a reschedule does not go back to a host the build already failed on.

Nova's RetryFilter (later the ``ignore_hosts`` of the request spec): the conductor adds
each host an attempt failed on to ``RequestSpec.ignore_hosts`` before asking again.
"""

from __future__ import annotations

import logging
from typing import Final

from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

ALREADY_TRIED: Final = FilterResult.reject("already tried")


class IgnoreHostsFilter(BaseHostFilter):
    """Reject a host listed in ``spec.ignore_hosts`` ("already tried").

    Applies to a forced host too, as Nova strips ignored hosts before it honours a forced
    one: a forced build that failed on its host ends in NoValidHost instead of failing
    there again (Nova does not reschedule a forced build at all).
    """

    name = "IgnoreHostsFilter"
    RUN_ON_FORCED_HOST = True

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        if host_state.host in spec.ignore_hosts:
            LOG.debug("%s was already tried for %s", host_state.host, spec.instance_uuid)
            return ALREADY_TRIED
        return PASS
