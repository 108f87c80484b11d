"""ServerGroupAntiAffinityFilter: members of an "anti-affinity" group keep apart.

Nova's hard anti-affinity with its ``max_server_per_host`` rule (API microversion 2.64): a
host may hold at most that many members of the group, 1 when the rule is not set. Soft
anti-affinity is a preference, not a rule: see the ServerGroupSoftAntiAffinityWeigher.
"""

from __future__ import annotations

import logging
from typing import Final

from kubenova.scheduler.filters import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

WITH_GROUP: Final = FilterResult.reject("anti-affinity")

#: Nova's limit when the group has no ``max_server_per_host`` rule.
DEFAULT_MAX_SERVER_PER_HOST: Final = 1


class ServerGroupAntiAffinityFilter(BaseHostFilter):
    """Reject a host that already holds ``max_server_per_host`` members of the request's
    "anti-affinity" group ("anti-affinity")."""

    name = "ServerGroupAntiAffinityFilter"

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        group = spec.server_group
        if group is None or group.policy != "anti-affinity":
            return PASS
        limit = group.max_server_per_host or DEFAULT_MAX_SERVER_PER_HOST
        members = group.members_on(host_state.host)
        if members >= limit:
            LOG.debug(
                "%s already holds %d member(s) of anti-affinity group %s (at most %d)",
                host_state.host,
                members,
                group.name,
                limit,
            )
            return WITH_GROUP
        return PASS
