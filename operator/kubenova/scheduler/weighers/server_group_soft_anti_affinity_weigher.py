"""ServerGroupSoftAntiAffinityWeigher: a member of a "soft-anti-affinity" group prefers the
hosts that hold the fewest of its group.

Raw weight: minus the number of the group's members on the host, for a
"soft-anti-affinity" group only (0 otherwise, which changes nothing after normalisation).
Default multiplier 1.0 (Nova's ``soft_anti_affinity_weight_multiplier``); it should stay
positive.
"""

from __future__ import annotations

from kubenova.scheduler.host_state import HostState, RequestSpec
from kubenova.scheduler.weighers.base import BaseWeigher


class ServerGroupSoftAntiAffinityWeigher(BaseWeigher):
    name = "ServerGroupSoftAntiAffinityWeigher"

    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        group = spec.server_group
        if group is None or group.policy != "soft-anti-affinity":
            return 0.0
        return -float(group.members_on(host_state.host))
