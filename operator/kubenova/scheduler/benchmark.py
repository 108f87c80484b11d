"""A micro-benchmark of one ``select_destinations`` (not a test; nothing asserts a time).

``python -m kubenova.scheduler.benchmark [--hosts 100] [--calls 2000]`` times the pure
filter-and-weigh step with every default filter and weigher (all multipliers on) over
synthetic hosts in three zones, with a request that exercises each filter: a zone, a node
selector, flavor extra specs, image properties, a soft-anti-affinity group and a hard
anti-affinity group (two passes, since a request has one group), and hosts already tried.
A second pass uses a request every live host passes (96 of 100), which weighs the most
hosts. It prints the mean and percentiles per call and the calls per second one core
sustains.
The database read and the claim, which ``SchedulerManager.schedule`` adds, are not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import statistics
import time
from collections.abc import Sequence

from kubenova.scheduler import filters, manager, weighers
from kubenova.scheduler.host_state import (
    AVAILABILITY_ZONE_LABEL,
    HostState,
    RequestSpec,
    ServerGroupSpec,
)

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def make_hosts(count: int) -> list[HostState]:
    """``count`` live hosts of mixed size and usage, in zones az0..az2, some down."""
    hosts = []
    for index in range(count):
        down = index % 25 == 24
        hosts.append(
            HostState(
                host=f"compute-{index:04}",
                vcpus=32,
                vcpus_used=(index * 7) % 96,
                memory_mib=131072,
                memory_mib_used=(index * 9973) % 120000,
                disk_gib=2000,
                disk_gib_used=(index * 37) % 1800,
                last_seen_up=NOW - datetime.timedelta(seconds=600 if down else 5),
                num_instances=index % 40,
                labels={
                    AVAILABILITY_ZONE_LABEL: f"az{index % 3}",
                    "disktype": "ssd" if index % 2 else "hdd",
                    "kubernetes.io/arch": "amd64",
                },
                cpu_arch="x86_64",
                hypervisor_type="QEMU",
                virt_type="kvm",
                failed_builds=1 if index % 17 == 0 else 0,
            )
        )
    return hosts


def make_specs(hosts: Sequence[HostState], *, constrained: bool) -> list[RequestSpec]:
    """Requests that between them switch on every filter and weigher (``constrained``), or
    that every live host passes, so that weighing covers the most hosts (the worst case)."""
    if not constrained:
        return [RequestSpec("00000000-0000-0000-0000-000000000001", 1, 512, 1)]
    members = {host.host: 1 + index % 3 for index, host in enumerate(hosts[::4])}
    base = RequestSpec(
        instance_uuid="00000000-0000-0000-0000-000000000001",
        vcpus=2,
        memory_mib=4096,
        disk_gib=20,
        availability_zone="az1",
        node_selector={"kubernetes.io/arch": "amd64"},
        flavor_extra_specs={"disktype": "ssd", "hw:cpu_policy": "shared"},
        image_architecture="x86_64",
        image_hypervisor_type="kvm",
        ignore_hosts=frozenset(host.host for host in hosts[:3]),
    )
    soft = ServerGroupSpec("soft", "soft-anti-affinity", member_hosts=members)
    hard = ServerGroupSpec("hard", "anti-affinity", max_server_per_host=2, member_hosts=members)
    return [
        dataclasses.replace(base, server_group=soft),
        dataclasses.replace(base, server_group=hard),
    ]


def run(host_count: int, calls: int, *, constrained: bool = True) -> list[float]:
    """Seconds taken by each of ``calls`` select_destinations over ``host_count`` hosts."""
    hosts = make_hosts(host_count)
    specs = make_specs(hosts, constrained=constrained)
    host_filters = filters.load_filters(filters.DEFAULT_FILTERS)
    # Every weigher on, the instance count too, so none is skipped.
    host_weighers = weighers.load_weighers(weighers.DEFAULT_WEIGHERS, {"NumInstancesWeigher": 1.0})
    context = filters.FilterContext(now=NOW)
    timings = []
    for call in range(calls):
        spec = specs[call % len(specs)]
        start = time.perf_counter()
        manager.select_destinations(spec, hosts, host_filters, host_weighers, context)
        timings.append(time.perf_counter() - start)
    return timings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    for constrained, label in ((True, "constrained request"), (False, "unconstrained request")):
        run(args.hosts, min(args.calls, 200), constrained=constrained)  # warm-up
        timings = run(args.hosts, args.calls, constrained=constrained)
        micro = sorted(t * 1e6 for t in timings)
        mean = statistics.fmean(micro)
        print(
            f"{label}: select_destinations over {args.hosts} hosts, "
            f"{len(filters.DEFAULT_FILTERS)} filters, {len(weighers.DEFAULT_WEIGHERS)} weighers, "
            f"{args.calls} calls: mean {mean:.0f} us, p50 {micro[len(micro) // 2]:.0f} us, "
            f"p99 {micro[int(len(micro) * 0.99)]:.0f} us, {1e6 / mean:.0f} calls/s on one core"
        )


if __name__ == "__main__":
    main()
