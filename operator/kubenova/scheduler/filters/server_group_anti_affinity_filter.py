"""ServerGroupAntiAffinityFilter: members of an "anti-affinity" group keep apart.

Nova's hard anti-affinity with its ``max_server_per_host`` rule (API microversion 2.64): a
host may hold at most that many members of the group, 1 when the rule is not set. Soft
anti-affinity is a preference, not a rule: see the ServerGroupSoftAntiAffinityWeigher.
"""

from __future__ import annotations

import logging
from typing import Final

from kubenova import placement
from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

WITH_GROUP: Final = FilterResult.reject(placement.POLICY_ANTI_AFFINITY)


class ServerGroupAntiAffinityFilter(BaseHostFilter):
    """Reject a host that already holds ``max_server_per_host`` members of the request's
    "anti-affinity" group ("anti-affinity")."""

    name = "ServerGroupAntiAffinityFilter"

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        group = spec.server_group
        if group is None or group.policy != placement.POLICY_ANTI_AFFINITY:
            return PASS
        members = group.members_on(host_state.host)
        if not placement.anti_affinity_allows(members, group.max_server_per_host):
            LOG.debug(
                "%s already holds %d member(s) of anti-affinity group %s",
                host_state.host,
                members,
                group.name,
            )
            return WITH_GROUP
        return PASS
