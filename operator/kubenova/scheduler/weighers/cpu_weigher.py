"""CPUWeigher: prefer the host with the most free vCPUs (spread).

Raw weight: free vCPUs, i.e. ``vcpus * cpu_allocation_ratio - vcpus_used``. Default
multiplier 1.0 (Nova's ``cpu_weight_multiplier``); a negative multiplier packs instead.
"""

from __future__ import annotations

from kubenova.scheduler.host_state import HostState, RequestSpec
from kubenova.scheduler.weighers.base import BaseWeigher


class CPUWeigher(BaseWeigher):
    name = "CPUWeigher"

    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        del spec
        return host_state.free_vcpus
