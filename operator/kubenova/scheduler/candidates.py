"""The hosts one request is filtered and weighed against (Nova's placement prefilter).

Filtering and weighing cost a few microseconds per host and filter for every request: with a
thousand hosts they were a fifth of the operator's time in a burst (docs/benchmarks.md). Nova
bounds this with placement, which answers the scheduler with at most
``max_placement_results`` hosts that have room, in random order when
``randomize_allocation_candidates`` is set. This does the same on the cached view: when there
are more hosts than the bound, only those with room for the request are kept, and when there
are still more, a random sample of them. The weighers then choose the best of the sample, not
of the fleet; the randomness also keeps concurrent requests from all choosing the same host.

The caller falls back to every host when no candidate passes the filters, so a request is
refused only when no host in the view could take it, and its explanation counts every host.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from kubenova.scheduler.host_state import HostState, RequestSpec


def select_candidates(
    spec: RequestSpec, hosts: Sequence[HostState], limit: int, rng: random.Random
) -> Sequence[HostState]:
    """``hosts`` when there are ``limit`` or fewer (or ``limit`` is 0, or a host is forced);
    otherwise those with room for ``spec``, and at most ``limit`` of them, chosen at random."""
    if limit <= 0 or spec.forced_host is not None or len(hosts) <= limit:
        return hosts
    with_room = [host for host in hosts if host.has_room_for(spec)]
    if len(with_room) <= limit:
        return with_room
    return rng.sample(with_room, limit)
