"""The scheduler: filter, weigh, claim.

``select_destinations`` is pure (host states in, ordered hosts out) so it can be
tested without a database; :class:`SchedulerManager` reads the host states and makes
the claim, which the database guards (see ``kubenova.db.api.claim_resources``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
from collections.abc import Callable, Sequence

from kubenova.scheduler import filters as filters_mod
from kubenova.scheduler import weighers as weighers_mod
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)


class NoValidHost(Exception):
    """No host passed the filters, or every one that did refused the claim."""

    def __init__(self, message: str, rejections: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.rejections = dict(rejections or {})


@dataclasses.dataclass(frozen=True)
class Selection:
    """The host that holds the claim and the alternates for a reschedule."""

    host: str
    alternates: tuple[str, ...]


def explain(total: int, rejections: collections.Counter[str]) -> str:
    """ "0/3 hosts: 2 insufficient memory, 1 down" (counts, largest first)."""
    if total == 0:
        return "0/0 hosts: no hypervisor has registered"
    parts = ", ".join(f"{count} {reason}" for reason, count in rejections.most_common())
    return f"0/{total} hosts: {parts}" if parts else f"0/{total} hosts available"


def select_destinations(
    spec: RequestSpec,
    hosts: Sequence[HostState],
    filters: Sequence[filters_mod.BaseHostFilter],
    weighers: Sequence[weighers_mod.BaseWeigher],
    context: filters_mod.FilterContext,
) -> list[HostState]:
    """The hosts that pass every filter, heaviest first; NoValidHost when none does."""
    rejections: collections.Counter[str] = collections.Counter()
    passing: list[HostState] = []
    for host in hosts:
        for host_filter in filters:
            result = host_filter.host_passes(host, spec, context)
            if not result.passed:
                rejections[result.reason or host_filter.name] += 1
                break
        else:
            passing.append(host)
    if not passing:
        raise NoValidHost(explain(len(hosts), rejections), dict(rejections))
    totals = [0.0 for _ in passing]
    for weigher in weighers:
        raw = [weigher.weigh(host, spec) for host in passing]
        for index, value in enumerate(weighers_mod.normalize(raw)):
            totals[index] += weigher.multiplier * value
    order = sorted(range(len(passing)), key=lambda i: (-totals[i], passing[i].host))
    return [passing[i] for i in order]


#: claim(instance_uuid, host, vcpus, memory_mib, disk_gib) -> whether the host took it.
ClaimFn = Callable[[str, str, int, int, int], bool]


class SchedulerManager:
    """Picks a host and claims the request's resources on it."""

    def __init__(
        self,
        host_states: Callable[[], list[HostState]],
        claim: ClaimFn,
        *,
        filters: Sequence[filters_mod.BaseHostFilter],
        weighers: Sequence[weighers_mod.BaseWeigher],
        max_attempts: int = 3,
        service_down_time_s: int = 60,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._host_states = host_states
        self._claim = claim
        self._filters = list(filters)
        self._weighers = list(weighers)
        self._max_attempts = max_attempts
        self._service_down_time_s = service_down_time_s
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))

    def schedule(self, spec: RequestSpec) -> Selection:
        """Claim on the best host that accepts; keep the next ones as alternates."""
        hosts = self._host_states()
        context = filters_mod.FilterContext(
            now=self._clock(), service_down_time_s=self._service_down_time_s
        )
        ordered = select_destinations(spec, hosts, self._filters, self._weighers, context)
        for index, host in enumerate(ordered):
            if self._claim(
                spec.instance_uuid, host.host, spec.vcpus, spec.memory_mib, spec.disk_gib
            ):
                alternates = tuple(h.host for h in ordered[index + 1 : index + self._max_attempts])
                LOG.info(
                    "instance %s claimed on %s (alternates %s)",
                    spec.instance_uuid,
                    host.host,
                    list(alternates),
                )
                return Selection(host.host, alternates)
            # Another claim won the race for this host since we read it: try the next.
            LOG.debug("claim on %s lost a race; trying the next host", host.host)
        raise NoValidHost(
            f"0/{len(hosts)} hosts: {len(ordered)} lost a race for their last resources",
            {"claim race": len(ordered)},
        )
