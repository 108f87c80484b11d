"""DiskWeigher: prefer the host with the most free local disk (spread).

Raw weight: free disk in GiB after allocation ratio, reservation and claims. Default
multiplier 1.0 (Nova's ``disk_weight_multiplier``); a negative multiplier packs instead.
"""

from __future__ import annotations

from kubenova.scheduler.host_state import HostState, RequestSpec
from kubenova.scheduler.weighers.base import BaseWeigher


class DiskWeigher(BaseWeigher):
    name = "DiskWeigher"

    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        del spec
        return host_state.free_disk_gib
