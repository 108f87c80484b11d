"""RAMWeigher: prefer the host with the most free memory (spread).

Raw weight: free memory in MiB after allocation ratio, reservation and claims. Default
multiplier 1.0 (Nova's ``ram_weight_multiplier``); a negative multiplier packs instead:
the host with the least free memory wins.
"""

from __future__ import annotations

from kubenova.scheduler.host_state import HostState, RequestSpec
from kubenova.scheduler.weighers.base import BaseWeigher


class RAMWeigher(BaseWeigher):
    name = "RAMWeigher"

    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        del spec
        return host_state.free_memory_mib
