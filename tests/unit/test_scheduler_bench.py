"""The scheduler benchmark's own arithmetic (hack/bench/scheduler_bench.py and the modules it
runs on): which hosts it calls overcommitted and how full it says they are (host_usage.py), how
it sizes its flavor to fill them (bench_creates.py), and the median and worst it reports over
several runs (bench_report.py). The SQL that reads the rows is tested on
MariaDB in tests/integration/test_bench_overcommit.py."""

from __future__ import annotations

import math

import pytest

from tests.support.bench import bench_module

bench = bench_module("scheduler_bench")
bench_creates = bench_module("bench_creates")
bench_report = bench_module("bench_report")
host_usage = bench_module("host_usage")
benchlib = bench_module("benchlib")


def node(
    host: str = "bench-001",
    capacity: tuple[float, float, float] = (16.0, 2048.0, 20.0),
    used: tuple[int, int, int] = (0, 0, 0),
    allocated: tuple[int, int, int] | None = None,
):
    """A compute node (vCPU, memory MiB, disk GiB); allocations equal to usage unless given.
    The default capacity is a default benchmark host's: 4 vCPUs x 4.0, 2048 MiB, 20 GiB."""
    return host_usage.NodeUsage(host, capacity, used, used if allocated is None else allocated)


# -- overcommit -----------------------------------------------------------------------------


def test_a_full_host_is_not_overcommitted():
    full = node(used=(10, 2040, 10))
    exactly = node(used=(16, 2048, 20))
    assert not full.overcommitted()
    assert not exactly.overcommitted()
    assert host_usage.overcommitted([full, exactly]) == []


@pytest.mark.parametrize(
    ("used", "allocated"),
    [
        ((17, 2048, 20), None),  # vCPUs over, usage and allocations alike
        ((11, 2244, 11), None),  # one 204 MiB instance too many
        ((10, 2049, 10), None),  # by a MiB
        ((10, 2040, 21), None),  # disk
        ((10, 2040, 10), (10, 2244, 10)),  # the allocations only
        ((10, 2244, 10), (10, 2040, 10)),  # the *_used columns only
    ],
    ids=["vcpu", "memory", "memory-by-1", "disk", "allocations-only", "usage-only"],
)
def test_a_host_over_its_capacity_in_any_resource_is_overcommitted(used, allocated):
    over = node("bench-002", used=used, allocated=allocated)
    others = [node("bench-001", used=(10, 2040, 10)), node("bench-003")]
    assert over.overcommitted()
    assert host_usage.overcommitted([others[0], over, others[1]]) == ["bench-002"]


def test_usage_differing_from_allocations_is_counted_apart():
    nodes = [
        node("bench-001", used=(10, 2040, 10)),
        node("bench-002", used=(10, 2040, 10), allocated=(9, 1836, 9)),
    ]
    assert host_usage.mismatched(nodes) == ["bench-002"]
    assert host_usage.overcommitted(nodes) == []


# -- fill -----------------------------------------------------------------------------------


def test_fill_is_allocations_over_allocatable_capacity_summed_over_the_hosts():
    nodes = [node("bench-001", used=(10, 2040, 10)), node("bench-002", used=(10, 2040, 10))]
    fills = host_usage.fill(nodes)
    assert fills == pytest.approx({"VCPU": 20 / 32, "MEMORY_MB": 4080 / 4096, "DISK_GB": 0.5})
    assert host_usage.fill_ratio(fills) == pytest.approx(4080 / 4096)
    # What it will be once instances are added (the plan the benchmark logs before a run).
    planned = host_usage.fill(nodes[:1], adding=(1, 204, 1))
    assert planned["MEMORY_MB"] == pytest.approx(2244 / 2048)


def test_fill_of_no_hosts_is_unknown():
    assert math.isnan(host_usage.fill_ratio(host_usage.fill([])))


# -- the flavor that fills the hosts --------------------------------------------------------


def test_the_default_run_fills_every_host_so_that_one_more_instance_would_overcommit_it():
    hosts = [node(f"bench-{i:03d}") for i in range(1, 101)]
    memory = bench_creates.flavor_memory_mib(hosts, 1000)
    assert memory == 204
    assert (
        host_usage.fill_ratio(host_usage.fill(hosts, adding=(1000, 1000 * memory, 1000)))
        >= bench_creates.FULL
    )
    assert 10 * memory <= 2048 < 11 * memory


def test_the_smoke_test_s_run_fills_its_hosts_to_the_mib():
    hosts = [node(f"e2e-bench-{i:03d}") for i in range(1, 4)]
    assert bench_creates.flavor_memory_mib(hosts, 12) == 512


def test_the_flavor_fits_the_host_with_least_room_left():
    hosts = [
        node("bench-001"),
        node("bench-002", used=(1, 512, 1)),  # left over from something else
        node("bench-003", capacity=(16.0, 4096.0, 20.0)),
    ]
    # Two a host (5 over 3), in the 1536 MiB bench-002 has left.
    assert bench_creates.flavor_memory_mib(hosts, 5) == 768


def test_the_flavor_is_not_sized_under_what_the_image_needs():
    hosts = [node(capacity=(16.0, 1024.0, 20.0))]
    assert bench_creates.flavor_memory_mib(hosts, 10) == 102
    with pytest.raises(benchlib.BenchError, match="under the 128"):
        bench_creates.flavor_memory_mib(hosts, 10, minimum=128)


@pytest.mark.parametrize(
    ("capacity", "instances", "option"),
    [
        ((16.0, 2048.0, 20.0), 100, "--host-memory-mib"),  # 20 MiB each
        ((8.0, 8192.0, 20.0), 10, "--host-vcpus"),  # 10 vCPUs a host, 8 there
        ((16.0, 2048.0, 5.0), 10, "--host-disk-gib"),
    ],
)
def test_hosts_that_cannot_hold_the_instances_are_refused(capacity, instances, option):
    with pytest.raises(benchlib.BenchError, match=option):
        bench_creates.flavor_memory_mib([node(capacity=capacity)], instances)


# -- median and worst of several runs -------------------------------------------------------


def run(throughput, p95, over=0, fill=0.996, messages=2.2, agents=3.0, deletes=40.0, rss=90.0):
    return {
        "throughput_per_s": throughput,
        "p50_s": p95 / 2,
        "p95_s": p95,
        "p99_s": p95 * 1.2,
        "overcommitted_hosts": over,
        "fill_ratio": fill,
        "db_queries_per_instance": 10.7,
        "messages_per_instance": messages,
        "operator_cpu_s": 11.0,
        "stack_cpu_s": {"operator": 11.0, "agents": agents},
        "submitted_in_s": 8.0,
        "delete_throughput_per_s": deletes,
        "agent_rss_mib": rss,
    }


def test_median_and_worst_take_each_figure_s_own_direction():
    runs = [
        run(61.0, 2.2, agents=3.0),
        run(55.0, 4.0, fill=0.9, agents=5.0),
        run(70.0, 1.5, messages=None, agents=4.0),
    ]
    middle, worst = bench_report.aggregate(runs)
    assert middle["throughput_per_s"] == 61.0
    assert worst["throughput_per_s"] == 55.0  # throughput: the lowest is the worst
    assert middle["p95_s"] == 2.2
    assert worst["p95_s"] == 4.0  # latency: the highest
    assert worst["fill_ratio"] == 0.9  # the emptiest run tested overcommit least
    assert middle["messages_per_instance"] == 2.2  # a run without the figure is left out
    assert middle["stack_cpu_s"] == {"operator": 11.0, "agents": 4.0}
    assert worst["stack_cpu_s"] == {"operator": 11.0, "agents": 5.0}


def test_the_median_of_an_even_number_of_runs_is_the_mean_of_the_middle_two():
    middle, worst = bench_report.aggregate([run(50.0, 2.0), run(60.0, 3.0)])
    assert middle["throughput_per_s"] == 55.0
    assert middle["p95_s"] == 2.5
    assert worst["p95_s"] == 3.0


def test_one_run_s_overcommit_is_not_outvoted_by_the_others():
    middle, worst = bench_report.aggregate([run(60.0, 2.0), run(60.0, 2.0, over=2), run(60.0, 2.0)])
    assert middle["overcommitted_hosts"] == 2
    assert worst["overcommitted_hosts"] == 2


def test_a_figure_no_run_has_is_null():
    middle, worst = bench_report.aggregate([run(60.0, 2.0, messages=None)])
    assert middle["messages_per_instance"] is None
    assert worst["messages_per_instance"] is None


def test_the_json_line_keeps_the_single_run_field_names_for_the_median():
    args = bench.parse_args(["--runs", "3"])
    runs = [run(61.0, 2.2), run(55.0, 4.0), run(70.0, 1.5)]
    report = bench_report.report(args, runs)
    single = {"instances", "hosts", "mode", "interval_s", *runs[0]}
    assert set(report) == single | {"worst", "runs"}
    assert report["throughput_per_s"] == 61.0
    assert report["worst"]["throughput_per_s"] == 55.0
    assert report["runs"] == runs
    assert (report["instances"], report["hosts"], report["mode"]) == (1000, 100, "burst")
    assert report["interval_s"] is None


def test_each_run_after_the_first_has_a_namespace_of_its_own():
    assert [bench.namespace_of("e2e-bench-x", k) for k in (1, 2, 3)] == [
        "e2e-bench-x",
        "e2e-bench-x-2",
        "e2e-bench-x-3",
    ]


def test_the_slowest_deletes_and_the_largest_agents_are_the_worst():
    runs = [run(61.0, 2.2, deletes=40.0, rss=90.0), run(60.0, 2.0, deletes=25.0, rss=120.0)]
    middle, worst = bench_report.aggregate(runs)
    assert (middle["delete_throughput_per_s"], worst["delete_throughput_per_s"]) == (32.5, 25.0)
    assert (middle["agent_rss_mib"], worst["agent_rss_mib"]) == (105, 120.0)


def test_a_stats_line_of_the_simulated_hosts_is_read_as_numbers():
    assert benchlib.parse_sim_stats("processes=2 hosts=1000 rss_mib=270 cpu_s=19.28\n") == {
        "processes": 2.0,
        "hosts": 1000.0,
        "rss_mib": 270.0,
        "cpu_s": 19.28,
    }
    with pytest.raises(benchlib.BenchError, match="not a stats line"):
        benchlib.parse_sim_stats("agents 100")
