"""Scheduler and control-plane benchmark: N instances over M simulated hosts.

    .venv/bin/python hack/bench/scheduler_bench.py [--instances 1000] [--hosts 100]
        [--mode burst|paced] [--interval 0.1] [--reuse-hosts] [--operator-pid PID]
        [--metrics-url URL] [--timeline FILE.csv]

It needs the operator of the local stack (`make dev-up`, which records its pid in
.kubenova/run/operator.pid; or --operator-pid), starts M simulated hosts with
hack/sim-hosts.sh (unless --reuse-hosts), waits until their Hypervisors are up, creates a
Flavor of its own (1 vCPU, 128 MiB, 1 GiB) and N Instances of the image kubenova-tiny in a
fresh namespace, and times each instance from the moment its create call returned to the
moment a watch on the namespace first sees it Running. Modes: ``paced`` creates one instance
every --interval seconds (default 0.1 s, the shape of KubeVirt's density test; 0.02 offers a
steady 50 instances/s), ``burst`` all at once from a thread pool.

It prints a summary, then, as its last line, one JSON object:

    instances, hosts, mode       what ran
    interval_s                   paced: seconds between create calls (null in a burst)
    throughput_per_s             N / (last Running - first create call)
    p50_s, p95_s, p99_s          create -> Running, client-side
    overcommitted_hosts          hosts whose usage or allocations exceed their capacity
                                 ((total - reserved) x allocation ratio), read from MariaDB
    db_queries_per_instance      MariaDB's Questions delta / N (every client counts)
    messages_per_instance        the operator's published + consumed messages delta / N
                                 (host heartbeats included)
    operator_cpu_s               the operator process's utime + stime delta
    stack_cpu_s                  the same per kind of process of the machine
    submitted_in_s               first create call sent -> last create call returned

--timeline writes every instance's times (sent, created, first seen Running; seconds from
the first create call) as CSV, to see where a burst's latency builds up.

Then it deletes its instances (waiting until they are gone), its Flavor and its namespace, and
stops the hosts it started. It asserts nothing about timings; it exits 1 when an instance did
not reach Running, landed on a host that is not one of its own, or was not deleted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime
import json
import math
import pathlib
import sys
import threading
import time
import uuid
from typing import Any

import benchlib
from benchlib import BenchError, log

FLAVOR_SPEC = {"vcpus": 1, "memoryMiB": 128, "diskGiB": 1, "description": "benchmark"}
PREFIX_LABEL = "kubenova.io/sim-prefix"


class InstanceWatch(threading.Thread):
    """Watches the Instances of one namespace; records when each is first seen Running."""

    def __init__(self, custom: Any, namespace: str) -> None:
        super().__init__(name="instance-watch", daemon=True)
        self._custom = custom
        self._namespace = namespace
        self._lock = threading.Lock()
        self.running_at: dict[str, float] = {}
        self.hosts: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.present: set[str] = set()
        self.listed = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> tuple[dict[str, float], dict[str, str], dict[str, str], set[str]]:
        with self._lock:
            return dict(self.running_at), dict(self.hosts), dict(self.errors), set(self.present)

    def _see(self, obj: dict[str, Any], seen_at: float) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        phase = status.get("phase")
        with self._lock:
            self.present.add(name)
            if phase == "Running" and name not in self.running_at:
                self.running_at[name] = seen_at
                self.hosts[name] = status.get("host") or ""
            elif phase == "Error" and name not in self.errors:
                fault = status.get("fault") or {}
                self.errors[name] = f"{fault.get('reason')}: {fault.get('message')}"

    def _list(self) -> str:
        listing = self._custom.list_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, self._namespace, "instances"
        )
        now = time.monotonic()
        with self._lock:
            self.present = set()
        for obj in listing.get("items", []):
            self._see(obj, now)
        self.listed.set()
        return str(listing["metadata"]["resourceVersion"])

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client import exceptions

        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                stream = watch.Watch()  # type: ignore[no-untyped-call]
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    benchlib.GROUP,
                    benchlib.VERSION,
                    self._namespace,
                    "instances",
                    resource_version=resource_version,
                    timeout_seconds=10,
                ):
                    seen_at = time.monotonic()
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        # 410 Gone: our resourceVersion is too old; list again.
                        resource_version = None
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        with self._lock:
                            self.present.discard(obj["metadata"]["name"])
                    else:
                        self._see(obj, seen_at)
                    if self._stop.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
            except exceptions.ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                else:
                    log(f"watch failed ({exc.status}); watching again")
                    time.sleep(0.5)
            except Exception as exc:  # a dropped connection: watch again from where we were
                log(f"watch interrupted ({exc!r}); watching again")
                time.sleep(0.5)


def host_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index:03d}" for index in range(1, count + 1)]


def wait_for_hosts(custom: Any, hosts: list[str], since: float | None, timeout: float) -> None:
    """Until every host's Hypervisor is up (with a heartbeat after ``since``, when given)."""
    wanted = set(hosts)
    deadline = time.monotonic() + timeout
    up: set[str] = set()
    while time.monotonic() < deadline:
        listing = custom.list_cluster_custom_object(benchlib.GROUP, benchlib.VERSION, "hypervisors")
        up = set()
        for obj in listing.get("items", []):
            name, status = obj["metadata"]["name"], obj.get("status") or {}
            if name not in wanted or status.get("state") != "up":
                continue
            if since is not None:
                beat = status.get("lastHeartbeat")
                if not beat or _epoch(beat) < since - 1:
                    continue
            up.add(name)
        if up == wanted:
            return
        time.sleep(1)
    missing = sorted(wanted - up)
    raise BenchError(f"{len(missing)} of {len(hosts)} hosts are not up: {missing[:5]}...")


def _epoch(timestamp: str) -> float:
    return (
        datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )


def overcommit(engine: Any, hosts: list[str]) -> tuple[int, int]:
    """(hosts over capacity, hosts whose *_used differ from their allocations' sum)."""
    import sqlalchemy

    def allocated(resource_class: str) -> str:
        return (
            "(SELECT COALESCE(SUM(a.used), 0) FROM allocations a "
            f"WHERE a.compute_node_id = cn.id AND a.resource_class = '{resource_class}')"
        )

    query = sqlalchemy.text(
        "SELECT cn.vcpus * cn.cpu_allocation_ratio, "
        "(cn.memory_mib - cn.reserved_host_memory_mib) * cn.ram_allocation_ratio, "
        "(cn.local_gb - cn.reserved_host_disk_gib) * cn.disk_allocation_ratio, "
        "cn.vcpus_used, cn.memory_mib_used, cn.local_gb_used, "
        f"{allocated('VCPU')}, {allocated('MEMORY_MB')}, {allocated('DISK_GB')} "
        "FROM compute_nodes cn WHERE cn.deleted = 0 AND cn.host IN :hosts"
    ).bindparams(sqlalchemy.bindparam("hosts", expanding=True))
    over = mismatched = 0
    with engine.connect() as connection:
        for row in connection.execute(query, {"hosts": hosts}):
            capacity = [float(row[0]), float(row[1]), float(row[2])]
            used = [int(row[3]), int(row[4]), int(row[5])]
            allocations = [int(row[6]), int(row[7]), int(row[8])]
            if any(u > c or a > c for u, a, c in zip(used, allocations, capacity, strict=True)):
                over += 1
            if used != allocations:
                mismatched += 1
    return over, mismatched


def instance_body(name: str, namespace: str, flavor: str, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": benchlib.API_VERSION,
        "kind": "Instance",
        "metadata": {"name": name, "namespace": namespace},
        # The selector keeps the instances on this run's simulated hosts, never a real one.
        "spec": {
            "flavor": flavor,
            "image": benchlib.TINY_IMAGE,
            "nodeSelector": {PREFIX_LABEL: prefix},
        },
    }


class Creator:
    """Creates instances and records, per name, when the create call was sent and returned."""

    def __init__(self, custom: Any, namespace: str, flavor: str, prefix: str) -> None:
        self._custom = custom
        self._namespace = namespace
        self._flavor = flavor
        self._prefix = prefix
        self._lock = threading.Lock()
        self.sent_at: dict[str, float] = {}
        self.created_at: dict[str, float] = {}
        self.failed: dict[str, str] = {}

    def create(self, name: str) -> None:
        body = instance_body(name, self._namespace, self._flavor, self._prefix)
        sent = time.monotonic()
        try:
            self._custom.create_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, self._namespace, "instances", body
            )
        except Exception as exc:
            with self._lock:
                self.failed[name] = repr(exc)
            return
        done = time.monotonic()
        with self._lock:
            self.sent_at[name] = sent
            self.created_at[name] = done


def run_creates(
    creator: Creator, names: list[str], mode: str, workers: int, interval: float
) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="create") as pool:
        if mode == "burst":
            list(pool.map(creator.create, names))
            return
        start = time.monotonic()
        futures = []
        for index, name in enumerate(names):
            # Fixed ticks: a slow create call does not push the later ones back.
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(creator.create, name))
        for future in futures:
            future.result()


def write_timeline(
    path: pathlib.Path, creator: Creator, running: dict[str, float], origin: float
) -> None:
    """name,sent,created,running per instance, in the order the create calls returned."""
    with path.open("w", encoding="utf-8", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["name", "sent_s", "created_s", "running_s"])
        for name in sorted(creator.created_at, key=creator.created_at.__getitem__):
            seen = running.get(name)
            rows.writerow([
                name,
                f"{creator.sent_at[name] - origin:.3f}",
                f"{creator.created_at[name] - origin:.3f}",
                "" if seen is None else f"{seen - origin:.3f}",
            ])  # fmt: skip


def wait_running(
    watch: InstanceWatch, names: list[str], hosts: set[str], timeout: float, operator_pid: int
) -> dict[str, str]:
    """Until every instance is Running or in Error; returns misplaced instances (name: host)."""
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        if not benchlib.process_alive(operator_pid):
            # Its CPU time and counters start again from zero: the figures would mean nothing.
            raise BenchError(f"the operator (pid {operator_pid}) exited during the run")
        running, placed, errors, _ = watch.snapshot()
        misplaced = {n: h for n, h in placed.items() if h not in hosts}
        if misplaced:
            log(f"instances landed on hosts that are not the benchmark's: {misplaced}")
            return misplaced
        if len(running) + len(errors) >= len(names):
            return {}
        if time.monotonic() - last_report > 10:
            log(f"{len(running)}/{len(names)} Running, {len(errors)} in Error")
            last_report = time.monotonic()
        time.sleep(0.2)
    log(f"timed out after {timeout:.0f}s waiting for instances to run")
    return {}


def cleanup(
    custom: Any, core: Any, watch: InstanceWatch, namespace: str, flavor: str, timeout: float
) -> bool:
    """Delete the namespace's instances (waiting until gone), the flavor and the namespace."""
    from kubernetes.client import exceptions

    ok = True
    started = time.monotonic()
    try:
        custom.delete_collection_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, namespace, "instances"
        )
    except exceptions.ApiException as exc:
        if exc.status != 404:
            raise
    deadline = started + timeout
    left: list[Any] = []
    while time.monotonic() < deadline:
        left = custom.list_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, namespace, "instances"
        ).get("items", [])
        if not left:
            break
        time.sleep(1)
    if left:
        log(f"{len(left)} instances are still there after {timeout:.0f}s")
        ok = False
    else:
        log(f"instances deleted in {time.monotonic() - started:.1f}s")
    cleanup_flavor(custom, flavor)
    if ok:
        # Without a namespace controller (the local stack runs only the apiserver) the
        # namespace stays Terminating, empty; deleting it still keeps it from being reused.
        core.delete_namespace(namespace)
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--mode", choices=("burst", "paced"), default="burst")
    parser.add_argument("--workers", type=int, default=16, help="concurrent create calls")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="paced: seconds between create calls"
    )
    parser.add_argument("--prefix", default="bench", help="simulated hosts' name prefix")
    parser.add_argument("--namespace", help="a namespace that does not exist yet (default: new)")
    parser.add_argument("--reuse-hosts", action="store_true", help="hosts already run")
    # Small hosts (16 benchmark instances each): the node selector keeps the benchmark's
    # instances on them, and the weighers keep everyone else's instances (another test's,
    # on a shared stack) on the larger real host while the benchmark runs.
    parser.add_argument("--host-vcpus", type=int, default=4)
    parser.add_argument("--host-memory-mib", type=int, default=2048)
    parser.add_argument("--host-disk-gib", type=int, default=20)
    parser.add_argument("--operator-pid", type=int, help="default: .kubenova/run/operator.pid")
    parser.add_argument("--metrics-url", default=benchlib.METRICS_URL)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to reach Running")
    parser.add_argument("--hosts-timeout", type=float, default=300)
    parser.add_argument(
        "--timeline",
        type=pathlib.Path,
        help="write each instance's times (seconds from the first create call sent) as CSV",
    )
    args = parser.parse_args(argv)
    if args.instances < 1 or args.hosts < 1 or args.workers < 1:
        parser.error("--instances, --hosts and --workers must be positive")
    if not (math.isfinite(args.interval) and args.interval > 0):
        parser.error("--interval must be a positive number of seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pid = benchlib.operator_pid(args.operator_pid)
    custom, core = benchlib.kube_api(pool_size=args.workers + 4)
    if benchlib.get_cluster_object(custom, "images", benchlib.TINY_IMAGE) is None:
        raise BenchError(f"the Image {benchlib.TINY_IMAGE} is missing: hack/register-image.sh")
    if benchlib.rpc_messages(args.metrics_url) is None:
        log(f"no metrics at {args.metrics_url}: messages_per_instance will be null")
    engine = benchlib.db_engine()
    hosts = host_names(args.prefix, args.hosts)
    run_id = uuid.uuid4().hex[:8]
    flavor = f"bench-{run_id}"
    namespace = args.namespace or flavor
    names = [f"bench-{index:05d}" for index in range(1, args.instances + 1)]
    started_hosts = False
    watch: InstanceWatch | None = None
    result: dict[str, Any] | None = None
    failures: list[str] = []
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
        custom.create_cluster_custom_object(
            benchlib.GROUP,
            benchlib.VERSION,
            "flavors",
            {"apiVersion": benchlib.API_VERSION, "kind": "Flavor",
             "metadata": {"name": flavor}, "spec": FLAVOR_SPEC},
        )  # fmt: skip
        core.create_namespace({"metadata": {"name": namespace}})
        watch = InstanceWatch(custom, namespace)
        watch.start()
        watch.listed.wait(30)

        cpu_before = benchlib.process_cpu_s(pid)
        stack_before = benchlib.stack_cpu_s()
        questions_before = benchlib.db_questions(engine)
        messages_before = benchlib.rpc_messages(args.metrics_url)
        log(f"creating {args.instances} instances ({args.mode}) in namespace {namespace}")
        creator = Creator(custom, namespace, flavor, args.prefix)
        run_creates(creator, names, args.mode, args.workers, args.interval)
        # The split between the two phases: while creates arrive, the stack takes them in and
        # places what it can; after, it only places the backlog.
        stack_at_last_create = benchlib.stack_cpu_s()
        placed_while_creating = len(watch.snapshot()[0])
        if creator.failed:
            failures.append(f"{len(creator.failed)} create calls failed")
            log(f"create failures: {list(creator.failed.items())[:3]}")
        created = [n for n in names if n in creator.created_at]
        misplaced = wait_running(watch, created, set(hosts), args.timeout, pid)
        cpu_after = benchlib.process_cpu_s(pid)
        stack_after = benchlib.stack_cpu_s()
        stack_cpu = benchlib.cpu_delta(stack_before, stack_after)
        questions_after = benchlib.db_questions(engine)
        messages_after = benchlib.rpc_messages(args.metrics_url)
        over, mismatched = overcommit(engine, hosts)

        running, _, errors, _ = watch.snapshot()
        latencies = [max(0.0, running[n] - creator.created_at[n]) for n in created if n in running]
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
        if args.timeline is not None:
            write_timeline(args.timeline, creator, running, first_create)
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
            "instances": args.instances,
            "hosts": args.hosts,
            "mode": args.mode,
            "interval_s": args.interval if args.mode == "paced" else None,
            "throughput_per_s": benchlib.rounded(len(latencies) / span if span > 0 else math.nan),
            "p50_s": benchlib.rounded(benchlib.percentile(latencies, 50)),
            "p95_s": benchlib.rounded(benchlib.percentile(latencies, 95)),
            "p99_s": benchlib.rounded(benchlib.percentile(latencies, 99)),
            "overcommitted_hosts": over,
            "db_queries_per_instance": benchlib.rounded(
                (questions_after - questions_before) / args.instances, 1
            ),
            "messages_per_instance": benchlib.rounded(messages, 2),
            "operator_cpu_s": benchlib.rounded(cpu_after - cpu_before, 2),
            "stack_cpu_s": stack_cpu,
            "submitted_in_s": benchlib.rounded(submitted_in, 2),
        }
        pacing = f" every {args.interval:g}s" if args.mode == "paced" else ""
        print(f"scheduler benchmark: {args.instances} instances over {args.hosts} hosts, "
              f"{args.mode}{pacing}")  # fmt: skip
        print(f"  reached Running      {len(latencies)}/{args.instances} in {span:.1f}s "
              f"({result['throughput_per_s']}/s)")  # fmt: skip
        print(f"  create -> Running    p50 {result['p50_s']}s  p95 {result['p95_s']}s  "
              f"p99 {result['p99_s']}s  max {max(latencies, default=math.nan):.3f}s")  # fmt: skip
        print(f"  create call          p50 {benchlib.percentile(create_calls, 50):.3f}s  "
              f"p99 {benchlib.percentile(create_calls, 99):.3f}s; all {len(created)} "
              f"created in {submitted_in:.1f}s")  # fmt: skip
        print(f"  overcommitted hosts  {over} (usage differing from allocations: {mismatched})")
        print(f"  per instance         {result['db_queries_per_instance']} DB queries, "
              f"{result['messages_per_instance']} messages")  # fmt: skip
        print(f"  operator CPU         {result['operator_cpu_s']}s "
              f"(RSS {benchlib.process_rss_mib(pid):.0f} MiB)")  # fmt: skip
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
    finally:
        if watch is not None:
            if not cleanup(custom, core, watch, namespace, flavor, max(300.0, args.instances)):
                failures.append("instances were left behind")
            watch.stop()
        else:
            cleanup_flavor(custom, flavor)
        if started_hosts:
            benchlib.sim_hosts("stop", "--prefix", args.prefix)
    for failure in failures:
        print(f"  FAILED: {failure}")
    if result is not None:
        print(json.dumps(result))
    return 1 if failures else 0


def cleanup_flavor(custom: Any, flavor: str) -> None:
    from kubernetes.client import exceptions

    try:
        custom.delete_cluster_custom_object(benchlib.GROUP, benchlib.VERSION, "flavors", flavor)
    except exceptions.ApiException as exc:
        if exc.status != 404:
            raise


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"scheduler_bench: {exc}", file=sys.stderr)
        sys.exit(2)
