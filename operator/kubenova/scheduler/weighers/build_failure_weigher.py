"""BuildFailureWeigher: keep away from hosts where builds have been failing.

Raw weight: minus the host's recent build failures (``HostState.failed_builds``). The
default multiplier is Nova's ``build_failure_weight_multiplier``, 1000000.0: after
normalisation every other weigher adds at most its own multiplier (about 1 each), so any
host with fewer failures beats any host with more, and the other weighers only order hosts
with equal failures. A host that fails every build quickly (a broken hypervisor passes the
filters but kills each guest) would otherwise attract every new instance.
"""

from __future__ import annotations

from kubenova.scheduler.host_state import HostState, RequestSpec
from kubenova.scheduler.weighers.base import BaseWeigher


class BuildFailureWeigher(BaseWeigher):
    name = "BuildFailureWeigher"

    def weigh(self, host_state: HostState, spec: RequestSpec) -> float:
        del spec
        return -float(host_state.failed_builds)
