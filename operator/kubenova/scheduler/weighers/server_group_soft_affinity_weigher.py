"""ServerGroupSoftAffinityWeigher: a member of a "soft-affinity" group prefers the hosts
that already hold most of its group.

Raw weight: the number of the group's members on the host, for a "soft-affinity" group
only (0 otherwise, which changes nothing after normalisation). Default multiplier 1.0
(Nova's ``soft_affinity_weight_multiplier``); it should stay positive, a negative one would
turn affinity into anti-affinity.
"""

from __future__ import annotations

from kubenova.scheduler.host_state import HostState, RequestSpec
from kubenova.scheduler.weighers.base import BaseWeigher


class ServerGroupSoftAffinityWeigher(BaseWeigher):
    name = "ServerGroupSoftAffinityWeigher"

    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        group = spec.server_group
        if group is None or group.policy != "soft-affinity":
            return 0.0
        return float(group.members_on(host_state.host))
