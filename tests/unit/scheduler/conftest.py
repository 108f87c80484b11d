from __future__ import annotations

import datetime

import pytest

from kubenova.scheduler import manager
from kubenova.scheduler.filters import FilterContext
from kubenova.scheduler.host_state import HostState, RequestSpec, ServerGroupSpec
from kubenova.scheduler.weighers import BaseWeigher

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
UUID = "00000000-0000-0000-0000-000000000001"


def make_host(name: str = "h1", **overrides) -> HostState:
    values = {
        "host": name,
        "vcpus": 4,
        "vcpus_used": 0,
        "memory_mib": 8192,
        "memory_mib_used": 0,
        "disk_gib": 100,
        "disk_gib_used": 0,
        "last_seen_up": NOW - datetime.timedelta(seconds=5),
    }
    values.update(overrides)
    return HostState(**values)


def make_spec(vcpus: int = 1, memory_mib: int = 512, disk_gib: int = 1, **overrides) -> RequestSpec:
    return RequestSpec(UUID, vcpus, memory_mib, disk_gib, **overrides)


def group_spec(policy, member_hosts=None, max_server_per_host=None, **overrides) -> RequestSpec:
    """A request from a member of a server group with ``policy``."""
    group = ServerGroupSpec(
        name="g1",
        policy=policy,
        max_server_per_host=max_server_per_host,
        member_hosts=member_hosts or {},
    )
    return make_spec(server_group=group, **overrides)


def ranked(weigher: BaseWeigher, hosts, spec=None) -> list[str]:
    """Host names heaviest first when ``weigher`` is the only weigher and nothing filters."""
    context = FilterContext(now=NOW)
    ordered = manager.select_destinations(spec or make_spec(), hosts, [], [weigher], context)
    return [host.host for host in ordered]


@pytest.fixture
def context() -> FilterContext:
    return FilterContext(now=NOW, service_down_time_s=60)
