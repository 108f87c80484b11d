"""Each host's own allocation ratios, as an administrator set them on its Hypervisor: the
filters hold every host to its own, the host view reads them from the records, and a change
is seen as soon as the conductor says hosts changed."""

from __future__ import annotations

from unittest import mock

import pytest

from kubenova.db import api as db_api
from kubenova.scheduler import host_manager
from kubenova.scheduler.filters import compute_filter, resource_filter
from kubenova.scheduler.manager import NoValidHost, select_destinations
from kubenova.scheduler.weighers.cpu_weigher import CPUWeigher
from tests.support import FakeClock
from tests.unit.scheduler.conftest import make_host, make_spec

FILTERS = [compute_filter.ComputeFilter(), resource_filter.ResourceFilter()]


def test_two_equal_hosts_take_what_each_ones_own_cpu_ratio_allows(context) -> None:
    # 4 vCPUs each, 6 in use: over the default ratio's 16 on one, not under 1.5 (6) on the other.
    strict = make_host("strict", vcpus_used=6, cpu_allocation_ratio=1.5)
    default = make_host("default", vcpus_used=6)
    ordered = select_destinations(make_spec(vcpus=1), [strict, default], FILTERS, [], context)
    assert [host.host for host in ordered] == ["default"]


def test_a_raised_ratio_lets_a_full_host_take_more(context) -> None:
    full = make_host("h1", memory_mib_used=8192)
    with pytest.raises(NoValidHost, match="1 insufficient memory"):
        select_destinations(make_spec(memory_mib=1024), [full], FILTERS, [], context)
    raised = make_host("h1", memory_mib_used=8192, ram_allocation_ratio=1.5)
    assert select_destinations(make_spec(memory_mib=1024), [raised], FILTERS, [], context)


def test_a_host_whose_lowered_ratio_is_below_its_usage_takes_nothing(context) -> None:
    # 10 GiB of disk placed, then the disk ratio lowered to 0.05 (5 GiB allocatable).
    over = make_host("h1", disk_gib_used=10, disk_allocation_ratio=0.05)
    result = resource_filter.ResourceFilter().host_passes(over, make_spec(disk_gib=0), context)
    assert (result.passed, result.reason) == (False, "insufficient disk")


def test_weighers_count_free_vcpus_under_each_hosts_ratio(context) -> None:
    # Equal hosts but for the ratio: 4 x 8.0 - 4 leaves more than 4 x 2.0 - 4.
    hosts = [
        make_host("low", vcpus_used=4, cpu_allocation_ratio=2.0),
        make_host("high", vcpus_used=4, cpu_allocation_ratio=8.0),
    ]
    ordered = select_destinations(make_spec(), hosts, FILTERS, [CPUWeigher(1.0)], context)
    assert [host.host for host in ordered] == ["high", "low"]


def _capacity(host: str, cpu_ratio: float, ram_ratio: float) -> db_api.HostCapacity:
    return db_api.HostCapacity(
        host=host,
        vcpus=4,
        vcpus_used=0,
        memory_mib=8192,
        memory_mib_used=0,
        local_gb=100,
        local_gb_used=0,
        cpu_allocation_ratio=cpu_ratio,
        ram_allocation_ratio=ram_ratio,
        disk_allocation_ratio=2.0,
        reserved_host_memory_mib=0,
        reserved_host_disk_gib=0,
        node_disabled=False,
        disabled_reason=None,
        running_vms=0,
        labels=None,
        cpu_arch="x86_64",
        hypervisor_type="QEMU",
        virt_type="kvm",
        failed_builds=0,
        service_disabled=False,
        last_seen_up=None,
    )


def test_the_host_view_reads_each_hosts_ratios_and_sees_a_change_once_told_hosts_changed(
    monkeypatch,
) -> None:
    records = [_capacity("h1", 4.0, 1.0), _capacity("h2", 1.0, 1.5)]
    monkeypatch.setattr(host_manager.db_api, "compute_node_capacities", lambda session: records)
    clock = FakeClock()
    # A session factory whose sessions and transactions are no-op context managers.
    view = host_manager.HostManager(
        lambda: host_manager.load_host_states(mock.MagicMock()), refresh_s=60.0, clock=clock
    )

    def ratios() -> dict[str, tuple[float, float, float]]:
        return {
            s.host: (s.cpu_allocation_ratio, s.ram_allocation_ratio, s.disk_allocation_ratio)
            for s in view.host_states()
        }

    assert ratios() == {"h1": (4.0, 1.0, 2.0), "h2": (1.0, 1.5, 2.0)}
    records[0] = _capacity("h1", 2.0, 1.0)  # an administrator lowered h1's cpu ratio
    assert ratios()["h1"] == (4.0, 1.0, 2.0)  # the cached view, well within refresh_s
    view.mark_stale()  # what the conductor's on_hosts_changed calls
    assert ratios()["h1"] == (2.0, 1.0, 2.0)
