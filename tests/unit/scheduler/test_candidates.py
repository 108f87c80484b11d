"""The hosts one request is filtered and weighed against: every host up to the bound, past it
a random sample of those with room; and the scheduler falls back to every host when the
sample passes nothing."""

from __future__ import annotations

import random
from collections.abc import Collection

import pytest

from kubenova.db.api import CLAIMED
from kubenova.scheduler.candidates import select_candidates
from kubenova.scheduler.filters import compute_filter, resource_filter
from kubenova.scheduler.host_state import HostState
from kubenova.scheduler.manager import NoValidHost, SchedulerManager
from kubenova.scheduler.weighers.ram_weigher import RAMWeigher
from tests.unit.scheduler.conftest import NOW, make_host, make_spec

FILTERS = [compute_filter.ComputeFilter(), resource_filter.ResourceFilter()]


def _fleet(count: int, full: Collection[int] = ()) -> list[HostState]:
    """``count`` hosts of 8 GiB; those numbered in ``full`` have 64 MiB left."""
    return [make_host(f"h{n:04d}", memory_mib_used=8128 if n in full else 0) for n in range(count)]


def test_a_fleet_within_the_bound_is_weighed_whole() -> None:
    hosts = _fleet(10, full={1, 2})
    assert select_candidates(make_spec(), hosts, 10, random.Random(1)) is hosts
    assert select_candidates(make_spec(), hosts, 0, random.Random(1)) is hosts


def test_past_the_bound_only_hosts_with_room_are_candidates() -> None:
    hosts = _fleet(10, full=set(range(7)))
    candidates = select_candidates(make_spec(memory_mib=512), hosts, 5, random.Random(1))
    assert [h.host for h in candidates] == ["h0007", "h0008", "h0009"]


def test_past_the_bound_a_random_sample_of_hosts_with_room() -> None:
    hosts = _fleet(100, full=set(range(50)))
    first = select_candidates(make_spec(memory_mib=512), hosts, 10, random.Random(1))
    second = select_candidates(make_spec(memory_mib=512), hosts, 10, random.Random(2))
    assert len(first) == len(second) == 10
    assert all(int(h.host[1:]) >= 50 for h in [*first, *second])
    assert {h.host for h in first} != {h.host for h in second}


def test_a_forced_host_is_never_sampled_away() -> None:
    hosts = _fleet(100)
    spec = make_spec(forced_host="h0042")
    assert select_candidates(spec, hosts, 10, random.Random(1)) is hosts


@pytest.mark.parametrize(("resource", "value"), [("vcpus_used", 16), ("disk_gib_used", 100)])
def test_room_counts_every_resource(resource: str, value: int) -> None:
    hosts = [make_host("full", **{resource: value}), make_host("free")]
    assert [h.host for h in select_candidates(make_spec(), hosts, 1, random.Random(1))] == ["free"]


def _scheduler(hosts, limit: int) -> SchedulerManager:
    return SchedulerManager(
        lambda: hosts,
        filters=FILTERS,
        weighers=[RAMWeigher()],
        clock=lambda: NOW,
        max_candidates=limit,
        rng=random.Random(7),
    )


def test_the_scheduler_falls_back_to_every_host_when_no_candidate_passes() -> None:
    # Every host with room is down but one that a sample of 5 out of 60 would rarely hold:
    # only the fall-back finds it.
    down = NOW.replace(year=2025)
    hosts = [make_host(f"d{n:02d}", last_seen_up=down) for n in range(59)]
    hosts.append(make_host("alive"))
    claims: list[str] = []

    def claim(spec, host):
        claims.append(host)
        return CLAIMED

    for _ in range(20):
        assert _scheduler(hosts, 5).schedule(make_spec(), claim) == "alive"
    assert set(claims) == {"alive"}


def test_a_refusal_past_the_bound_counts_every_host() -> None:
    down = NOW.replace(year=2025)
    hosts = [make_host(f"d{n:02d}", last_seen_up=down) for n in range(30)]
    hosts += [make_host(f"f{n:02d}", memory_mib_used=8128) for n in range(30)]
    with pytest.raises(NoValidHost) as raised:
        _scheduler(hosts, 5).schedule(make_spec(), lambda spec, host: CLAIMED)
    assert str(raised.value) == "0/60 hosts: 30 down, 30 insufficient memory"


def test_within_the_sample_the_weighers_choose() -> None:
    # 20 hosts with room, a bound of 20: all are candidates, and the freest wins.
    hosts = [make_host(f"h{n:02d}", memory_mib_used=100 * n) for n in range(1, 20)]
    hosts.append(make_host("freest"))
    hosts += [make_host(f"x{n:02d}", memory_mib_used=8128) for n in range(10)]
    chosen = _scheduler(hosts, 20).schedule(make_spec(), lambda spec, host: CLAIMED)
    assert chosen == "freest"
