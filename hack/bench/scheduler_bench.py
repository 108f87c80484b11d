"""Scheduler and control-plane benchmark: N instances over M simulated hosts, filled.

    .venv/bin/python hack/bench/scheduler_bench.py [--instances 1000] [--hosts 100]
        [--mode burst|paced] [--interval 0.1] [--runs 1] [--pause 10] [--reuse-hosts]
        [--flavor-memory-mib MIB] [--operator-pid PID] [--metrics-url URL]
        [--timeline FILE.csv]

It needs the operator of the local stack (`make dev-up`, which records its pid in
.kubenova/run/operator.pid; or --operator-pid), starts M simulated hosts with
hack/sim-hosts.sh (unless --reuse-hosts) and waits until their Hypervisors are up.

It then creates a Flavor of its own that makes the N instances fill the hosts: 1 vCPU, 1 GiB
and, for memory, the least free allocatable memory of any of the hosts ((total - reserved) x
allocation ratio - used, read from MariaDB) divided by ceil(N / M) and rounded down to a MiB.
The default hosts (4 vCPUs, 2048 MiB, 20 GiB) with 1000 instances over 100 hosts give 204 MiB:
10 instances a host take 99.6 % of the fleet's memory, and no host has room for an 11th, so
one instance too many on any host would overcommit it. --flavor-memory-mib sets the memory
instead. The fill reached is read back from MariaDB after each run (``fill_ratio``).

Each of --runs runs creates the N Instances of the image kubenova-tiny in a fresh namespace
and times each instance from the moment its create call was *sent* to the moment a watch on
the namespace first sees it Running; then it deletes them (one call each, from as many threads
as the creates) and times that until the watch has seen every one gone,
waits until the hosts' usage in MariaDB is back where it was before the first run, and
pauses --pause seconds before the next run. Modes: ``paced`` creates one instance every
--interval seconds (default 0.1 s, the shape of KubeVirt's density test; 0.02 offers a
steady 50 instances/s), ``burst`` all at once from a thread pool.

It prints each run's summary, then the median and the worst run of every figure, and, as its
last line, one JSON object:

    instances, hosts, mode       what ran
    interval_s                   paced: seconds between create calls (null in a burst)
    throughput_per_s             N / (last Running - first create call sent)
    p50_s, p95_s, p99_s          create call sent -> first seen Running, client-side
    overcommitted_hosts          hosts whose usage or allocations exceed their capacity
                                 ((total - reserved) x allocation ratio), read from MariaDB
                                 once all are Running
    fill_ratio                   the fullest resource's allocations / allocatable capacity,
                                 summed over the benchmark's hosts, at the same moment
    db_queries_per_instance      MariaDB's Questions delta / N (every client counts)
    messages_per_instance        the operator's published + consumed messages delta / N
                                 (host heartbeats included)
    operator_cpu_s               the operator process's utime + stime delta
    stack_cpu_s                  the same per kind of process of the machine
    submitted_in_s               first create call sent -> last create call returned
    delete_throughput_per_s      N / (the first delete call sent -> the last Instance seen
                                 gone), one call each from the create threads' pool
    agent_rss_mib                the simulated hosts' agent processes' RSS once all Running
                                 (hack/sim-hosts.sh stats)
    worst                        every figure above (from throughput_per_s) in the run where
                                 it was worst: the lowest throughput_per_s and fill_ratio,
                                 the highest of the others (stack_cpu_s: per process kind)
    runs                         every run's figures, in order

The figures outside ``worst`` and ``runs`` are the median of the runs (the mean of the middle
two for an even count), except ``overcommitted_hosts``, which is the most found in any run: it
counts errors, and one run's overcommit must not be outvoted by the others.

--timeline writes every instance's times (run, sent, created, first seen Running; seconds from
the run's first create call) as CSV, to see where a burst's latency builds up.

At the end it deletes its Flavor and retires the hosts it started (hack/sim-hosts.sh retire:
stopped, and their Hypervisors deleted). It asserts nothing about timings; it exits 1 when an
instance did not reach Running, landed on a host that is not one of its own, was not deleted,
or its allocations were not freed (a run that fails ends the series).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import pathlib
import sys
import time
import uuid
from typing import Any, TextIO

import benchlib
from bench_creates import (
    MIN_FLAVOR_MEMORY_MIB,
    Creator,
    create_flavor,
    flavor_memory_mib,
    image_min_memory_mib,
    run_creates,
    wait_running,
)
from bench_deletes import cleanup, cleanup_flavor, timed_delete
from bench_report import print_aggregate, report, write_timeline
from benchlib import BenchError, log
from host_usage import (
    fill,
    fill_ratio,
    host_names,
    mismatched,
    node_usage,
    overcommitted,
    wait_for_hosts,
    wait_hosts_free,
)
from instance_watch import InstanceWatch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--mode", choices=("burst", "paced"), default="burst")
    parser.add_argument("--workers", type=int, default=16, help="concurrent create calls")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="paced: seconds between create calls"
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="runs on the same hosts; reports median and worst"
    )
    parser.add_argument(
        "--pause", type=float, default=10, help="seconds between a run's cleanup and the next"
    )
    parser.add_argument("--prefix", default="bench", help="simulated hosts' name prefix")
    parser.add_argument(
        "--namespace",
        help="a namespace that does not exist yet, for the first run; run K uses NAMESPACE-K "
        "(default: new)",
    )
    parser.add_argument("--reuse-hosts", action="store_true", help="hosts already run")
    # Small hosts: the node selector keeps the benchmark's instances on them, and the weighers
    # keep everyone else's instances (another test's, on a shared stack) on the larger real
    # host while the benchmark runs.
    parser.add_argument("--host-vcpus", type=int, default=4)
    parser.add_argument("--host-memory-mib", type=int, default=2048)
    parser.add_argument("--host-disk-gib", type=int, default=20)
    parser.add_argument(
        "--flavor-memory-mib",
        type=int,
        help="the flavor's memory (default: what makes the instances fill the hosts)",
    )
    parser.add_argument("--operator-pid", type=int, help="default: .kubenova/run/operator.pid")
    parser.add_argument("--metrics-url", default=benchlib.METRICS_URL)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to reach Running")
    parser.add_argument("--hosts-timeout", type=float, default=300)
    parser.add_argument(
        "--free-timeout",
        type=float,
        default=120,
        help="seconds for the hosts' usage to come back after a run's instances are deleted",
    )
    parser.add_argument(
        "--timeline",
        type=pathlib.Path,
        help="write each instance's times (seconds from its run's first create call sent) as CSV",
    )
    args = parser.parse_args(argv)
    if args.instances < 1 or args.hosts < 1 or args.workers < 1 or args.runs < 1:
        parser.error("--instances, --hosts, --workers and --runs must be positive")
    if not (math.isfinite(args.interval) and args.interval > 0):
        parser.error("--interval must be a positive number of seconds")
    if not (math.isfinite(args.pause) and args.pause >= 0):
        parser.error("--pause must be a number of seconds")
    if args.flavor_memory_mib is not None and args.flavor_memory_mib < MIN_FLAVOR_MEMORY_MIB:
        parser.error(f"--flavor-memory-mib must be at least {MIN_FLAVOR_MEMORY_MIB}")
    return args


@dataclasses.dataclass
class Bench:
    """What every run of one invocation shares."""

    args: argparse.Namespace
    custom: Any
    core: Any
    engine: Any
    pid: int
    hosts: list[str]
    flavor: str
    names: list[str]
    #: The --timeline CSV writer, or None.
    timeline: Any = None


def run_once(bench: Bench, run: int, namespace: str) -> tuple[dict[str, Any] | None, list[str]]:
    """One run in ``namespace`` (created here, deleted after): its figures (None when it
    could not measure them) and what went wrong."""
    args, custom, engine, pid = bench.args, bench.custom, bench.engine, bench.pid
    failures: list[str] = []
    result: dict[str, Any] | None = None
    bench.core.create_namespace({"metadata": {"name": namespace}})
    watch = InstanceWatch(custom, namespace)
    watch.start()
    try:
        watch.listed.wait(30)
        cpu_before = benchlib.process_cpu_s(pid)
        stack_before = benchlib.stack_cpu_s()
        questions_before = benchlib.db_questions(engine)
        messages_before = benchlib.rpc_messages(args.metrics_url)
        log(f"run {run}: creating {args.instances} instances ({args.mode}) in {namespace}")
        creator = Creator(custom, namespace, bench.flavor, args.prefix)
        run_creates(creator, bench.names, args.mode, args.workers, args.interval)
        # The split between the two phases: while creates arrive, the stack takes them in and
        # places what it can; after, it only places the backlog.
        stack_at_last_create = benchlib.stack_cpu_s()
        placed_while_creating = len(watch.snapshot()[0])
        if creator.failed:
            failures.append(f"{len(creator.failed)} create calls failed")
            log(f"create failures: {list(creator.failed.items())[:3]}")
        created = [n for n in bench.names if n in creator.created_at]
        misplaced = wait_running(watch, created, set(bench.hosts), args.timeout, pid)
        cpu_after = benchlib.process_cpu_s(pid)
        stack_after = benchlib.stack_cpu_s()
        stack_cpu = benchlib.cpu_delta(stack_before, stack_after)
        questions_after = benchlib.db_questions(engine)
        messages_after = benchlib.rpc_messages(args.metrics_url)
        nodes = node_usage(engine, bench.hosts)
        over, differing, fills = overcommitted(nodes), mismatched(nodes), fill(nodes)
        agents = benchlib.sim_hosts_stats(args.prefix)

        running, _, errors, _ = watch.snapshot()
        # From the create call sent: the time the call itself took is part of what the
        # client waits for. A watch sees an instance only after its create was sent.
        latencies = [running[n] - creator.sent_at[n] for n in created if n in running]
        if misplaced:
            failures.append(f"{len(misplaced)} instances on hosts not the benchmark's")
        if len(latencies) < args.instances:
            failures.append(
                f"{args.instances - len(latencies)} instances did not reach Running "
                f"({len(errors)} in Error)"
            )
            for name, message in list(errors.items())[:3]:
                log(f"{name}: {message}")
        first_create = min(creator.sent_at.values(), default=math.nan)
        if bench.timeline is not None:
            write_timeline(bench.timeline, run, creator, running, first_create)
        last_running = max((running[n] for n in created if n in running), default=math.nan)
        span = last_running - first_create
        messages = (
            None
            if messages_before is None or messages_after is None
            else (messages_after - messages_before) / args.instances
        )
        create_calls = [creator.created_at[n] - creator.sent_at[n] for n in created]
        # How fast the work was offered: in a burst, latency beyond this pace is queueing.
        submitted_in = max(creator.created_at.values(), default=math.nan) - first_create
        result = {
            "throughput_per_s": benchlib.rounded(len(latencies) / span if span > 0 else math.nan),
            "p50_s": benchlib.rounded(benchlib.percentile(latencies, 50)),
            "p95_s": benchlib.rounded(benchlib.percentile(latencies, 95)),
            "p99_s": benchlib.rounded(benchlib.percentile(latencies, 99)),
            "overcommitted_hosts": len(over),
            "fill_ratio": benchlib.rounded(fill_ratio(fills), 4),
            "db_queries_per_instance": benchlib.rounded(
                (questions_after - questions_before) / args.instances, 1
            ),
            "messages_per_instance": benchlib.rounded(messages, 2),
            "operator_cpu_s": benchlib.rounded(cpu_after - cpu_before, 2),
            "stack_cpu_s": stack_cpu,
            "submitted_in_s": benchlib.rounded(submitted_in, 2),
            "delete_throughput_per_s": None,
            "agent_rss_mib": agents.get("rss_mib"),
        }
        pacing = f" every {args.interval:g}s" if args.mode == "paced" else ""
        print(f"scheduler benchmark, run {run}/{args.runs}: {args.instances} instances over "
              f"{args.hosts} hosts, {args.mode}{pacing}")  # fmt: skip
        print(f"  reached Running      {len(latencies)}/{args.instances} in {span:.1f}s "
              f"({result['throughput_per_s']}/s)")  # fmt: skip
        print(f"  sent -> Running      p50 {result['p50_s']}s  p95 {result['p95_s']}s  "
              f"p99 {result['p99_s']}s  max {max(latencies, default=math.nan):.3f}s")  # fmt: skip
        print(f"  create call          p50 {benchlib.percentile(create_calls, 50):.3f}s  "
              f"p99 {benchlib.percentile(create_calls, 99):.3f}s; all {len(created)} "
              f"created in {submitted_in:.1f}s")  # fmt: skip
        print("  hosts filled         "
              + ", ".join(f"{k} {100 * v:.1f} %" for k, v in fills.items())
              + " of allocatable")  # fmt: skip
        print(f"  overcommitted hosts  {len(over)} {over[:5] if over else ''}".rstrip()
              + f" (usage differing from allocations: {len(differing)})")  # fmt: skip
        print(f"  per instance         {result['db_queries_per_instance']} DB queries, "
              f"{result['messages_per_instance']} messages")  # fmt: skip
        print(f"  operator CPU         {result['operator_cpu_s']}s "
              f"(RSS {benchlib.process_rss_mib(pid):.0f} MiB)")  # fmt: skip
        print(f"  simulated hosts      {agents.get('hosts')} in {agents.get('processes')} "
              f"agent processes, RSS {agents.get('rss_mib')} MiB")  # fmt: skip
        busy = sum(stack_cpu.values())
        print(f"  machine CPU          {busy:.1f}s in all, "
              f"{1000 * busy / max(1, len(latencies)):.1f} ms per instance: "
              + ", ".join(f"{k} {v}" for k, v in stack_cpu.items()))  # fmt: skip
        phases = (
            ("while creating", submitted_in, placed_while_creating,
             benchlib.cpu_delta(stack_before, stack_at_last_create)),
            ("after", span - submitted_in, len(latencies) - placed_while_creating,
             benchlib.cpu_delta(stack_at_last_create, stack_after)),
        )  # fmt: skip
        for phase, seconds, placed, cpu in phases:
            print(f"  {phase:<20} {placed} Running in {seconds:.1f}s, CPU "
                  + ", ".join(f"{k} {v}" for k, v in cpu.items()))  # fmt: skip
        sys.stdout.flush()
        stack_before_delete = benchlib.stack_cpu_s()
        deleted, delete_span = timed_delete(
            custom, watch, namespace, created, args.timeout, args.workers
        )
        delete_cpu = benchlib.cpu_delta(stack_before_delete, benchlib.stack_cpu_s())
        result["delete_throughput_per_s"] = benchlib.rounded(
            deleted / delete_span if delete_span > 0 else math.nan
        )
        print(f"  deleted              {deleted}/{len(created)} in {delete_span:.1f}s "
              f"({result['delete_throughput_per_s']}/s from the call sent), CPU "
              + ", ".join(f"{k} {v}" for k, v in delete_cpu.items()))  # fmt: skip
        if deleted < len(created):
            failures.append(f"{len(created) - deleted} instances were not deleted")
    finally:
        if not cleanup(custom, bench.core, namespace, max(300.0, args.instances)):
            failures.append("instances were left behind")
        watch.stop()
    return result, failures


def namespace_of(base: str, run: int) -> str:
    """Run 1's namespace is ``base``, run K's ``base-K``."""
    return base if run == 1 else f"{base}-{run}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pid = benchlib.operator_pid(args.operator_pid)
    custom, core = benchlib.kube_api(pool_size=args.workers + 4)
    min_memory = image_min_memory_mib(custom)
    if benchlib.rpc_messages(args.metrics_url) is None:
        log(f"no metrics at {args.metrics_url}: messages_per_instance will be null")
    engine = benchlib.db_engine()
    hosts = host_names(args.prefix, args.hosts)
    run_id = uuid.uuid4().hex[:8]
    flavor = f"bench-{run_id}"
    base_namespace = args.namespace or flavor
    bench = Bench(
        args=args,
        custom=custom,
        core=core,
        engine=engine,
        pid=pid,
        hosts=hosts,
        flavor=flavor,
        names=[f"bench-{index:05d}" for index in range(1, args.instances + 1)],
    )
    started_hosts = False
    flavor_created = False
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    timeline: TextIO | None = None
    try:
        if not args.reuse_hosts:
            since = time.time()
            log(f"starting {args.hosts} simulated hosts ({args.prefix}-*)")
            started_hosts = True
            benchlib.sim_hosts(
                "start", str(args.hosts), "--prefix", args.prefix,
                "--vcpus", str(args.host_vcpus), "--memory-mib", str(args.host_memory_mib),
                "--disk-gib", str(args.host_disk_gib), "--log-level", "WARNING",
            )  # fmt: skip
            wait_for_hosts(custom, hosts, since, args.hosts_timeout)
            log(f"{args.hosts} hosts up after {time.time() - since:.1f}s")
        else:
            wait_for_hosts(custom, hosts, None, args.hosts_timeout)
        before = node_usage(engine, hosts)
        if len(before) != len(hosts):
            missing = sorted(set(hosts) - {node.host for node in before})
            raise BenchError(f"hosts without a compute node in MariaDB: {missing[:5]}")
        memory = args.flavor_memory_mib or flavor_memory_mib(before, args.instances, min_memory)
        create_flavor(custom, flavor, memory, before, args.instances)
        flavor_created = True
        if args.timeline is not None:
            timeline = args.timeline.open("w", encoding="utf-8", newline="")
            bench.timeline = csv.writer(timeline)
            bench.timeline.writerow(["run", "name", "sent_s", "created_s", "running_s"])
        for run in range(1, args.runs + 1):
            if run > 1:
                log(f"pausing {args.pause:g}s before run {run}")
                time.sleep(args.pause)
            result, failed = run_once(bench, run, namespace_of(base_namespace, run))
            if result is not None:
                runs.append(result)
            if not failed:
                held = wait_hosts_free(engine, hosts, before, args.free_timeout)
                if held:
                    failed.append(
                        f"{len(held)} hosts still hold usage {args.free_timeout:.0f}s after "
                        f"run {run}'s instances were deleted: {held[:5]}"
                    )
            if failed:
                failures += [f"run {run}: {failure}" for failure in failed]
                if run < args.runs:
                    log(f"run {run} failed: the remaining runs are skipped")
                break
    finally:
        if timeline is not None:
            timeline.close()
        if flavor_created:
            cleanup_flavor(custom, flavor)
        if started_hosts:
            benchlib.sim_hosts("retire", "--prefix", args.prefix)
    if runs:
        print_aggregate(args, runs)
    for failure in failures:
        print(f"  FAILED: {failure}")
    if runs:
        print(json.dumps(report(args, runs)))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"scheduler_bench: {exc}", file=sys.stderr)
        sys.exit(2)
