"""`make chaos`: each fault in the middle of a burst of instances, then what was lost.

    .venv/bin/python hack/chaos/chaos.py [--faults a,b,c] [--instances 200] [--hosts 20]
        [--processes 4] [--timeout 300] [--settle S] [--hold 5] [--real-guests 4]
        [--real-host vm] [--list] [--dry-run]

It runs on the stack of `make dev-up` (the operator and this host's agent as host processes)
and needs root: its faults signal the stack's processes and run its scripts. It starts its own
simulated hosts (topology.py), a Flavor of its own, and for each fault (plan.py, faults.py) a
burst in a namespace of its own (burst.py); it prints one JSON line per fault (result.py) on
stdout, progress on stderr. docs/chaos.md says what each fault does and how each count is
taken.

Exit status: 0 when every fault that ran left every count at 0 and converged; 1 otherwise;
2 when the suite cannot run (no operator, no image, not root).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

import bench_creates
import bench_deletes
import benchlib
import burst
import density_bench
import faults
import host_usage
import observe
import plan
import processes
import result
import topology
from benchlib import BenchError, log

#: The burst's Flavor: small, so that a down host's share fits on the others.
FLAVOR_VCPUS = 1
FLAVOR_MEMORY_MIB = 128
FLAVOR_DISK_GIB = 1
HOSTS_TIMEOUT_S = 300.0


def read_settings() -> tuple[plan.StackSettings, str]:
    """The operator's settings, from its environment when it runs (else this one's), and
    where they came from."""
    pid = processes.pidfile_pid(benchlib.OPERATOR_PIDFILE)
    if pid is not None:
        try:
            return plan.stack_settings(processes.environ_of(pid)), f"the operator's, pid {pid}"
        except BenchError:
            pass
    return plan.stack_settings(os.environ), "no operator environment read: this one's or defaults"


def create_flavor(custom: Any, name: str, memory_mib: int) -> None:
    custom.create_cluster_custom_object(
        benchlib.GROUP, benchlib.VERSION, "flavors",
        {"apiVersion": benchlib.API_VERSION, "kind": "Flavor", "metadata": {"name": name},
         "spec": {"vcpus": FLAVOR_VCPUS, "memoryMiB": memory_mib, "diskGiB": FLAVOR_DISK_GIB,
                  "description": "chaos suite"}},
    )  # fmt: skip


def simulated_burst(
    custom: Any,
    name: str,
    run_id: str,
    flavor: str,
    hosts: topology.ChaosHosts,
    args: Any,
    hold: float,
) -> burst.Burst:
    namespace = f"chaos-{run_id}-{name}"
    return burst.Burst(
        fault=name,
        guests="simulated",
        namespace=namespace,
        names=[f"chaos-{index:04d}" for index in range(1, args.instances + 1)],
        make_creator=lambda ns: bench_creates.Creator(custom, ns, flavor, hosts.prefix),
        scope=observe.Scope(namespace=namespace, hosts=hosts.names, exclusive=hosts.names),
        free_hosts=hosts.names,
        hold_s=hold,
    )


def real_burst(
    custom: Any, name: str, run_id: str, flavor: str, args: Any, hold: float
) -> burst.Burst:
    namespace = f"chaos-{run_id}-{name}"
    host = args.real_host
    return burst.Burst(
        fault=name,
        guests="real",
        namespace=namespace,
        names=[f"chaos-real-{index:02d}" for index in range(1, args.real_guests + 1)],
        make_creator=lambda ns: density_bench.GuestCreator(custom, ns, flavor, host),
        scope=observe.Scope(namespace=namespace, hosts=[host], exclusive=(), libvirt_hosts=[host]),
        free_hosts=[],
        hold_s=hold,
    )


def namespaces_on(items: list[dict[str, Any]], hosts: list[str]) -> list[str]:
    """The namespaces of the Instances (``items``) placed on ``hosts``."""
    wanted = set(hosts)
    return sorted(
        {
            item["metadata"]["namespace"]
            for item in items
            if (item.get("status") or {}).get("host") in wanted
        }
    )


def host_up(custom: Any, host: str) -> bool:
    hypervisor = benchlib.get_cluster_object(custom, "hypervisors", host) or {}
    return (hypervisor.get("status") or {}).get("state") == "up"


def run(args: Any, settings: plan.StackSettings) -> int:
    if os.geteuid() != 0:
        raise BenchError("run it as root: the faults signal the stack's processes and scripts")
    benchlib.operator_pid(None)
    custom, core = benchlib.kube_api(pool_size=args.workers + 4)
    image = benchlib.get_cluster_object(custom, "images", benchlib.TINY_IMAGE)
    if image is None:
        raise BenchError(f"the Image {benchlib.TINY_IMAGE} is missing: hack/register-image.sh")
    min_memory = int(image["spec"].get("minMemoryMiB") or 0)
    engine = benchlib.db_engine()
    ctx = burst.Context(
        custom=custom,
        core=core,
        engine=engine,
        workers=args.workers,
        timeout=args.timeout,
        settle=settings.settle_s(args.settle),
        free_timeout=args.free_timeout,
    )
    run_id = uuid.uuid4().hex[:6]
    hosts = topology.ChaosHosts(plan.sim_host_count(args.hosts), args.processes)
    simulated = [n for n in args.faults if plan.fault(n).guests == "simulated"]
    flavors: list[str] = []
    lines: list[dict[str, Any]] = []
    started = False
    earlier = namespaces_on(
        custom.list_cluster_custom_object(benchlib.GROUP, benchlib.VERSION, "instances")["items"],
        hosts.names,
    )
    if simulated and earlier:
        # Their domains and claims would count against this run's audits and hosts.
        raise BenchError(f"Instances of an earlier run are on the chaos hosts: delete {earlier}")
    try:
        if simulated:
            since = time.time()
            started = True
            hosts.start()
            host_usage.wait_for_hosts(custom, hosts.names, since, HOSTS_TIMEOUT_S)
            flavors.append(f"chaos-{run_id}")
            create_flavor(custom, flavors[-1], max(FLAVOR_MEMORY_MIB, min_memory))
        for name in args.faults:
            hold = plan.hold_s(name, args, settings)
            if plan.fault(name).guests == "real":
                if not host_up(custom, args.real_host):
                    line = result.skipped(name, f"the Hypervisor {args.real_host} is not up")
                    print(json.dumps(line), flush=True)
                    lines.append(line)
                    continue
                flavor = f"chaos-{run_id}-real"
                if flavor not in flavors:
                    flavors.append(flavor)
                    create_flavor(custom, flavor, max(64, min_memory))
                spec = real_burst(custom, name, run_id, flavor, args, hold)
            else:
                # A fault before may have left hosts down; the next one starts from all up.
                host_usage.wait_for_hosts(custom, hosts.names, None, HOSTS_TIMEOUT_S)
                spec = simulated_burst(custom, name, run_id, flavors[0], hosts, args, hold)
            line = burst.run(ctx, faults.build(name, hosts, core), spec)
            print(json.dumps(line), flush=True)
            lines.append(line)
            if line.get("error"):
                log("the stack may not have recovered: the remaining faults are not run")
                break
    finally:
        for flavor in flavors:
            try:
                bench_deletes.cleanup_flavor(custom, flavor)
            except Exception as exc:
                log(f"could not delete the Flavor {flavor}: {exc!r}")
        if started:
            hosts.stop()
    failing = [line["fault"] for line in lines if result.failed(line)]
    if failing:
        log(f"failed: {', '.join(failing)}")
    return 1 if failing else 0


def main(argv: list[str] | None = None) -> int:
    args = plan.parse_args(argv)
    if args.list:
        print("\n".join(plan.list_lines()))
        return 0
    settings, source = read_settings()
    if args.dry_run:
        print("\n".join(plan.plan_lines(args, settings, source)))
        return 0
    return run(args, settings)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, ValueError) as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        sys.exit(2)
