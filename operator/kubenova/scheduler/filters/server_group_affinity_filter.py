"""ServerGroupAffinityFilter: a member of an "affinity" group goes where the others are.

Nova's hard affinity: once any member of the group runs somewhere, every new member must
land on a host that already has one. The first member goes anywhere. Soft affinity is a
preference, not a rule: see the ServerGroupSoftAffinityWeigher.
"""

from __future__ import annotations

import logging
from typing import Final

from kubenova import placement
from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

NOT_WITH_GROUP: Final = FilterResult.reject(placement.POLICY_AFFINITY)


class ServerGroupAffinityFilter(BaseHostFilter):
    """Reject a host without a member of the request's "affinity" group ("affinity"),
    once the group has a member anywhere."""

    name = "ServerGroupAffinityFilter"

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        group = spec.server_group
        if group is None or group.policy != placement.POLICY_AFFINITY:
            return PASS
        # A host recorded with zero members holds none: it does not anchor the group.
        if not placement.affinity_allows(group.occupied_hosts, host_state.host):
            LOG.debug("%s has no member of affinity group %s", host_state.host, group.name)
            return NOT_WITH_GROUP
        return PASS
