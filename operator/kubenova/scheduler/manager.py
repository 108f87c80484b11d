"""The scheduler: filter, weigh, claim.

``select_destinations`` is pure (host states in, ordered hosts out) so it can be
tested without a database; :class:`SchedulerManager` reads the (cached) host states and
tries the hosts in order with the claim its caller hands it: the conductor's, which the
database guards (see ``kubenova.db.api.claim_resources``) and which records the build.
"""

from __future__ import annotations

import collections
import datetime
import logging
import random
import time
from collections.abc import Callable, Sequence

from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.scheduler import filters as filters_mod
from kubenova.scheduler import metrics
from kubenova.scheduler import weighers as weighers_mod
from kubenova.scheduler.candidates import select_candidates
from kubenova.scheduler.host_manager import HostManager
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)


class NoValidHost(Exception):
    """No host passed the filters, or every one that did refused the claim."""

    def __init__(self, message: str, rejections: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.rejections = dict(rejections or {})


def explain(total: int, rejections: collections.Counter[str]) -> str:
    """ "0/3 hosts: 2 insufficient memory, 1 down" (counts, largest first)."""
    if total == 0:
        return "0/0 hosts: no hypervisor has registered"
    parts = ", ".join(f"{count} {reason}" for reason, count in rejections.most_common())
    return f"0/{total} hosts: {parts}" if parts else f"0/{total} hosts available"


#: The reason counted for every host that is not the one an administrator forced.
NOT_FORCED_HOST = "not the forced host"


def select_destinations(
    spec: RequestSpec,
    hosts: Sequence[HostState],
    filters: Sequence[filters_mod.BaseHostFilter],
    weighers: Sequence[weighers_mod.BaseWeigher],
    context: filters_mod.FilterContext,
) -> list[HostState]:
    """The hosts that pass every filter, heaviest first; NoValidHost when none does.

    Pure: no I/O, no clock, no randomness; equal weights are ordered by host name. Each
    rejected host is counted once, under the reason of the first filter that rejects it.
    Cost: one ``host_passes`` per host and filter until the first rejection, one ``weigh``
    per passing host and weigher (weighers with a zero multiplier are skipped).

    A forced host (``spec.forced_host``): every other host is rejected as "not the forced
    host", and the forced one still goes through the configured filters that are marked
    ``RUN_ON_FORCED_HOST`` (ComputeFilter, ResourceFilter, IgnoreHostsFilter): it must be
    up, enabled, have room for the claim and not be a host this build already failed on.
    Zone, labels, image properties and server group rules are the administrator's to
    override. Nova's forced host skips every filter; checking liveness and room here turns
    a build that could only fail on the host into a NoValidHost that says why.
    """
    passing, rejections = filter_hosts(spec, hosts, filters, context)
    if not passing:
        raise NoValidHost(explain(len(hosts), rejections), dict(rejections))
    return weigh_hosts(spec, passing, weighers)


def filter_hosts(
    spec: RequestSpec,
    hosts: Sequence[HostState],
    filters: Sequence[filters_mod.BaseHostFilter],
    context: filters_mod.FilterContext,
) -> tuple[list[HostState], collections.Counter[str]]:
    """The hosts that pass every filter (in the given order), and the rejected ones counted
    by reason; see :func:`select_destinations`."""
    rejections: collections.Counter[str] = collections.Counter()
    passing: list[HostState] = []
    forced = spec.forced_host
    active = filters if forced is None else [f for f in filters if f.RUN_ON_FORCED_HOST]
    for host in hosts:
        if forced is not None and host.host != forced:
            rejections[NOT_FORCED_HOST] += 1
            continue
        for host_filter in active:
            result = host_filter.host_passes(host, spec, context)
            if not result.passed:
                rejections[result.reason or host_filter.name] += 1
                break
        else:
            passing.append(host)
    return passing, rejections


def weigh_hosts(
    spec: RequestSpec, passing: list[HostState], weighers: Sequence[weighers_mod.BaseWeigher]
) -> list[HostState]:
    """``passing``, heaviest first (equal weights by host name)."""
    if len(passing) == 1:
        # Normalising one host gives 0 for every weigher: nothing to weigh.
        return passing
    totals = [0.0] * len(passing)
    for weigher in weighers:
        multiplier = weigher.multiplier
        if multiplier == 0.0:
            continue
        raw = [weigher.weigh(host, spec) for host in passing]
        for index, value in enumerate(weighers_mod.normalize(raw)):
            totals[index] += multiplier * value
    order = sorted(range(len(passing)), key=lambda i: (-totals[i], passing[i].host))
    return [passing[i] for i in order]


#: claim(spec, host) -> true when the host took the request (and its server group allowed
#: it), else why it refused, in the words of the filters' reasons.
ClaimFn = Callable[[RequestSpec, str], db_api.ClaimResult]


class SchedulerManager:
    """Picks a host and claims the request's resources on it with the caller's claim."""

    def __init__(
        self,
        host_states: Callable[[], list[HostState]],
        *,
        filters: Sequence[filters_mod.BaseHostFilter],
        weighers: Sequence[weighers_mod.BaseWeigher],
        service_down_time_s: int = 60,
        clock: Callable[[], datetime.datetime] | None = None,
        on_claimed: Callable[[RequestSpec, str], None] | None = None,
        on_refused: Callable[[], None] | None = None,
        max_candidates: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self._max_candidates = max_candidates
        self._rng = rng or random.Random()
        self._on_claimed = on_claimed
        self._on_refused = on_refused
        self._host_states = host_states
        self._filters = list(filters)
        self._weighers = list(weighers)
        self._service_down_time_s = service_down_time_s
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))

    @classmethod
    def from_settings(
        cls, settings: OperatorSettings, host_manager: HostManager
    ) -> SchedulerManager:
        """The configured filters and weighers over ``host_manager``'s view of the hosts, which
        each claim updates (or, refused, marks stale)."""
        return cls(
            host_manager.host_states,
            filters=filters_mod.load_filters(
                settings.enabled_filters or filters_mod.DEFAULT_FILTERS
            ),
            weighers=weighers_mod.load_weighers(
                settings.weighers or weighers_mod.DEFAULT_WEIGHERS, settings.weigher_multipliers
            ),
            service_down_time_s=settings.service_down_time_s,
            on_claimed=host_manager.consume,
            on_refused=host_manager.mark_stale,
            max_candidates=settings.scheduler_max_candidates,
        )

    def schedule(self, spec: RequestSpec, claim: ClaimFn) -> str:
        """Claim on the best host that accepts, trying the next while hosts refuse; the host.

        NoValidHost counts every host once: under the first filter that rejected it, or,
        for one that passed, the reason its claim was refused ("0/5 hosts: 3 node selector,
        2 anti-affinity" when two members of a group raced for the last two hosts).
        """
        started = time.perf_counter()
        try:
            host = self._schedule(spec, claim)
        except NoValidHost as exc:
            metrics.no_valid_host(time.perf_counter() - started, exc.rejections)
            raise
        metrics.scheduled(time.perf_counter() - started)
        return host

    def _schedule(self, spec: RequestSpec, claim: ClaimFn) -> str:
        hosts = self._host_states()
        context = filters_mod.FilterContext(
            now=self._clock(), service_down_time_s=self._service_down_time_s
        )
        candidates = select_candidates(spec, hosts, self._max_candidates, self._rng)
        passing, rejections = filter_hosts(spec, candidates, self._filters, context)
        if not passing and candidates is not hosts:
            # None of the sample: every host, so that a refusal is the whole view's, and its
            # explanation counts every host.
            passing, rejections = filter_hosts(spec, hosts, self._filters, context)
        if not passing:
            raise NoValidHost(explain(len(hosts), rejections), dict(rejections))
        ordered = weigh_hosts(spec, passing, self._weighers)
        for host in ordered:
            outcome = claim(spec, host.host)
            if outcome:
                if self._on_claimed is not None:
                    self._on_claimed(spec, host.host)
                LOG.info("instance %s claimed on %s", spec.instance_uuid, host.host)
                return host.host
            # The host changed since it was read (another claim took its room, a group member
            # landed there, it was disabled): count why, with the filters' rejections, and try
            # the next.
            LOG.debug("claim on %s refused (%s); trying the next host", host.host, outcome.refusal)
            refusal = outcome.refusal or "refused"
            rejections[refusal] += 1
            metrics.claim_refused(refusal)
            if self._on_refused is not None:
                self._on_refused()
        raise NoValidHost(explain(len(hosts), rejections), dict(rejections))
