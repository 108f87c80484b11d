"""NumInstancesWeigher: weigh hosts by how many instances they run.

Raw weight: minus the host's instance count, so that, like the resource weighers here, a
**positive multiplier spreads** (prefers the host with the fewest instances) and a
**negative multiplier packs** (prefers the host with the most). Nova's weigher has the
opposite sign (raw weight = the count, positive multiplier packs): translate a Nova
``num_instances_weight_multiplier`` by flipping its sign. The default multiplier is Nova's,
0.0: the weigher is off unless configured.
"""

from __future__ import annotations

from kubenova.scheduler.host_state import HostState, RequestSpec
from kubenova.scheduler.weighers.base import BaseWeigher


class NumInstancesWeigher(BaseWeigher):
    name = "NumInstancesWeigher"

    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        del spec
        return -float(host_state.num_instances)
