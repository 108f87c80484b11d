from __future__ import annotations

import datetime

import pytest

from kubenova.scheduler.filters import FilterContext
from kubenova.scheduler.host_state import HostState, RequestSpec

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


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


def make_spec(vcpus: int = 1, memory_mib: int = 512, disk_gib: int = 1) -> RequestSpec:
    return RequestSpec("00000000-0000-0000-0000-000000000001", vcpus, memory_mib, disk_gib)


@pytest.fixture
def context() -> FilterContext:
    return FilterContext(now=NOW, service_down_time_s=60)
