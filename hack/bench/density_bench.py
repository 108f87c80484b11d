"""Density benchmark: many real QEMU guests of the tiny image on this host, created paced.

    .venv/bin/python hack/bench/density_bench.py [--guests 100] [--interval 0.1] [--host vm]
        [--ready-timeout 900] [--delete-timeout 600] [--operator-pid PID]

The shape of KubeVirt's density test. It needs the local stack of `make dev-up`: the operator
and the agent of host ``--host`` (the libvirt driver, real QEMU), whose Hypervisor must be up.

1. Sets the host's ``spec.allocationRatios`` (merge patch) so that the guests fit: each ratio
   is what the guests plus the host's current usage need, rounded up to 0.01, and never under
   Nova's default (cpu 4.0, memory 1.0, disk 1.0), so memory stays at 1.0 unless the guests
   need more than the host has. It waits until ``status.allocationRatios`` shows them, and at
   the end puts the previous spec value back (removed if there was none).
2. Creates a Flavor of its own (1 vCPU, the image's minimum memory or 64 MiB, whichever is
   larger, 1 GiB) and a namespace of its own, then --guests Instances of kubenova-tiny forced
   onto ``--host`` (``spec.forcedHost``), one every --interval seconds on fixed ticks.
3. Times each guest from its create call *sent* to the first watch event showing it Running,
   and to its console log (``$KUBENOVA_INSTANCES_PATH/<uid>/console.log``) holding the line
   ``kubenova-guest: ready``. A guest not ready --ready-timeout seconds after its create call
   is counted, not fatal. Every 0.5 s it samples the machine's used memory (MemTotal -
   MemAvailable) and the RSS of the operator and this host's agent.
4. Deletes every Instance and waits until they are gone and none of their QEMU runs.

It prints one line per guest and, as its last line, one JSON object (see docs/benchmarks.md,
"Density benchmark"). It asserts nothing about timings; it exits 1 when an instance did not
reach Running, ran on another host, or was not deleted or its QEMU did not exit; 2 when it
cannot start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import uuid
from collections.abc import Collection
from typing import Any

import bench_creates
import bench_deletes
import benchlib
import density_machine as machine
import instance_watch
from benchlib import BenchError, log

#: Each ratio of ``spec.allocationRatios``: the Hypervisor status figures it governs, the
#: Flavor field one guest takes of them, and Nova's default.
RATIO_RESOURCES = (
    ("cpu", "vcpus", "vcpus", 4.0),
    ("memory", "memoryMiB", "memoryMiB", 1.0),
    ("disk", "diskGiB", "diskGiB", 1.0),
)
MIN_FLAVOR_MEMORY_MIB = 64
MERGE_PATCH = "application/merge-patch+json"
#: How long a deleted guest's QEMU may take to exit once its Instance is gone.
QEMU_EXIT_S = 120


# -- The pure parts -----------------------------------------------------------------------


def required_ratios(
    status: dict[str, Any], guests: int, flavor: dict[str, int]
) -> dict[str, float]:
    """The allocation ratios under which ``guests`` more of ``flavor`` fit on a host whose
    Hypervisor status is ``status``: (used + guests x the flavor's) / (capacity - reserved),
    rounded up to 0.01, and at least Nova's default. Capacity less reserved is the status's
    allocatable over the ratio in force (allocatable is rounded down, so this errs high)."""
    in_force = status.get("allocationRatios") or {}
    ratios: dict[str, float] = {}
    for key, field, flavor_field, default in RATIO_RESOURCES:
        figures = status.get(field) or {}
        allocatable, used = figures.get("allocatable"), figures.get("used")
        if not isinstance(allocatable, int) or not isinstance(used, int):
            raise BenchError(f"the Hypervisor's status.{field} has no allocatable and used figures")
        base = allocatable / float(in_force.get(key) or default)
        if base <= 0:
            raise BenchError(f"the Hypervisor's status.{field}.allocatable is {allocatable}")
        needed = used + guests * flavor[flavor_field]
        # Rounded first so that an exact quotient (2.2) is not pushed up by float error.
        ratio = max(default, math.ceil(round(needed / base * 100, 6)) / 100)
        if ratio > 1000:
            raise BenchError(
                f"{guests} guests need a {key} allocation ratio of {ratio:g} on this host, over "
                "the 1000 a Hypervisor accepts: run fewer (--guests)"
            )
        ratios[key] = ratio
    return ratios


def restore_value(
    previous: dict[str, Any] | None, applied: Collection[str]
) -> dict[str, Any] | None:
    """What ``spec.allocationRatios`` is merge-patched with to put ``previous`` back after the
    keys ``applied`` were set: null when there was none, else each key's old value, null for
    a key it did not have."""
    if previous is None:
        return None
    return {key: previous.get(key) for key in sorted({*applied, *previous})}


def ratios_shown(status: dict[str, Any], wanted: dict[str, float]) -> bool:
    """Whether ``status.allocationRatios`` holds ``wanted``."""
    shown = status.get("allocationRatios") or {}
    return all(
        isinstance(shown.get(key), int | float) and abs(shown[key] - value) < 1e-6
        for key, value in wanted.items()
    )


def latency_figures(
    sent: dict[str, float],
    running: dict[str, float],
    booted: dict[str, float],
    dhcp_failed: Collection[str] = (),
) -> dict[str, Any]:
    """Per guest, create call sent -> first seen Running, -> guest ready (its ready line) and
    -> guest booted (its last boot line, ready or ``dhcp failed``): their p50 and p95 (nearest
    rank; null without any) and how many got there."""
    to_running = [running[name] - at for name, at in sent.items() if name in running]
    to_booted = [booted[name] - at for name, at in sent.items() if name in booted]
    to_ready = [
        booted[name] - at for name, at in sent.items() if name in booted and name not in dhcp_failed
    ]
    return {
        "guests_running": len(to_running),
        "guests_ready": len(to_ready),
        "guests_dhcp_failed": len(to_booted) - len(to_ready),
        "p50_running_s": benchlib.rounded(benchlib.percentile(to_running, 50)),
        "p95_running_s": benchlib.rounded(benchlib.percentile(to_running, 95)),
        "p50_guest_ready_s": benchlib.rounded(benchlib.percentile(to_ready, 50)),
        "p95_guest_ready_s": benchlib.rounded(benchlib.percentile(to_ready, 95)),
        "p95_guest_booted_s": benchlib.rounded(benchlib.percentile(to_booted, 95)),
    }


def per_vm(total_mib: float, guests: int) -> float | None:
    """``total_mib`` per guest, to 0.1 MiB; null for no guests."""
    return round(total_mib / guests, 1) if guests > 0 else None


class GuestCreator(bench_creates.Creator):
    """Creates Instances forced onto one host (their uids name their directories, and
    console logs, on the host)."""

    def __init__(self, custom: Any, namespace: str, flavor: str, host: str) -> None:
        super().__init__(custom, namespace, flavor, prefix="")
        self._host = host

    def body(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": benchlib.API_VERSION,
            "kind": "Instance",
            "metadata": {"name": name, "namespace": self._namespace},
            "spec": {"flavor": self._flavor, "image": benchlib.TINY_IMAGE,
                     "forcedHost": self._host},
        }  # fmt: skip


# -- The stack ----------------------------------------------------------------------------


def patch_ratios(custom: Any, host: str, value: dict[str, Any] | None) -> None:
    custom.patch_cluster_custom_object(
        benchlib.GROUP, benchlib.VERSION, "hypervisors", host,
        {"spec": {"allocationRatios": value}}, _content_type=MERGE_PATCH,
    )  # fmt: skip


def wait_ratios(custom: Any, host: str, wanted: dict[str, float], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hypervisor = benchlib.get_cluster_object(custom, "hypervisors", host) or {}
        if ratios_shown(hypervisor.get("status") or {}, wanted):
            return
        time.sleep(0.5)
    raise BenchError(f"Hypervisor {host}'s status.allocationRatios did not show {wanted} in time")


def wait_guests(
    watch: instance_watch.InstanceWatch,
    poller: machine.ReadyPoller,
    sent: dict[str, float],
    timeout: float,
    operator: int,
) -> None:
    """Until every guest is ready, in Error, or ``timeout`` past its create call."""
    last_report = 0.0
    while True:
        running, _, errors, _ = watch.snapshot()
        ready, now = poller.snapshot(), time.monotonic()
        if all(name in ready or name in errors or now > at + timeout for name, at in sent.items()):
            return
        if not benchlib.process_alive(operator):
            raise BenchError(f"the operator (pid {operator}) exited during the run")
        if now - last_report > 10:
            log(f"{len(running)}/{len(sent)} Running, {len(ready)} ready, {len(errors)} in Error")
            last_report = now
        time.sleep(0.5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between creates")
    parser.add_argument("--host", default="vm", help="the real host the agent runs for")
    parser.add_argument("--workers", type=int, default=8, help="concurrent create calls")
    parser.add_argument(
        "--ready-timeout", type=float, default=900, help="seconds from a guest's create call"
    )
    parser.add_argument("--delete-timeout", type=float, default=600)
    parser.add_argument("--operator-pid", type=int, help="default: .kubenova/run/operator.pid")
    args = parser.parse_args(argv)
    if args.guests < 1 or args.workers < 1:
        parser.error("--guests and --workers must be positive")
    for option in ("interval", "ready_timeout", "delete_timeout"):
        value = getattr(args, option)
        if not (math.isfinite(value) and value > 0):
            parser.error(f"--{option.replace('_', '-')} must be a positive number of seconds")
    return args


@dataclasses.dataclass
class Measured:
    """What one run saw, for the report."""

    running: dict[str, float]
    ready: dict[str, float]
    dhcp_failed: set[str]
    errors: dict[str, str]
    uids: dict[str, str]
    memory_baseline_mib: float
    #: The operator's and this host's agent's RSS summed, before the first create and once
    #: every guest was ready or given up on.
    control_plane_before_mib: float
    control_plane_after_mib: float
    qemu_rss_mib: float
    qemu_processes: int


def measure(
    args: argparse.Namespace,
    creator: GuestCreator,
    watch: instance_watch.InstanceWatch,
    poller: machine.ReadyPoller,
    sampler: machine.MemorySampler,
    control_plane: list[int],
    failures: list[str],
) -> Measured:
    """Creates the guests and waits for them; adds to ``failures`` what went wrong."""
    watch.start()
    watch.listed.wait(30)
    memory_baseline, rss_before = sampler.sample()
    sampler.start()
    poller.start()
    names = [f"density-{index:03d}" for index in range(1, args.guests + 1)]
    log(f"creating {args.guests} guests every {args.interval:g}s on {args.host}")
    bench_creates.run_creates(creator, names, "paced", args.workers, args.interval)
    if creator.failed:
        failures.append(f"{len(creator.failed)} create calls failed")
        log(f"create failures: {list(creator.failed.items())[:3]}")
    wait_guests(watch, poller, creator.sent_at, args.ready_timeout, control_plane[0])
    running, hosts, errors, _ = watch.snapshot()
    uids = creator.created()
    qemu = machine.qemu_pids(uids.values())
    measured = Measured(
        running=running,
        ready=poller.snapshot(),
        dhcp_failed=poller.dhcp_failed(),
        errors=errors,
        uids=uids,
        memory_baseline_mib=memory_baseline,
        control_plane_before_mib=rss_before,
        control_plane_after_mib=machine.processes_rss_mib(control_plane),
        qemu_rss_mib=machine.processes_rss_mib(list(qemu.values())),
        qemu_processes=len(qemu),
    )
    sampler.stop()
    misplaced = {name: host for name, host in hosts.items() if host != args.host}
    if misplaced:
        failures.append(f"{len(misplaced)} instances ran on another host: {misplaced}")
    if len(running) < args.guests:
        failures.append(f"{args.guests - len(running)} instances did not reach Running "
                        f"({len(errors)} in Error)")  # fmt: skip
    return measured


def report(
    args: argparse.Namespace,
    sent: dict[str, float],
    seen: Measured,
    sampler: machine.MemorySampler,
    ratios: dict[str, float],
) -> dict[str, Any]:
    """Prints a line per guest and the summary; the figures of the JSON line."""
    for name in sorted(sent):
        to_running = f"{seen.running[name] - sent[name]:8.2f}s" if name in seen.running else "never"
        to_ready = f"{seen.ready[name] - sent[name]:8.2f}s" if name in seen.ready else "never"
        if name in seen.dhcp_failed:
            to_ready += " (dhcp failed)"
        error = f"  Error: {seen.errors[name]}" if name in seen.errors else ""
        print(f"{name} {seen.uids.get(name, '')[:8]}  Running {to_running:>9}  "
              f"ready {to_ready:>9}{error}")  # fmt: skip
    result = {
        "guests": args.guests,
        "interval_s": args.interval,
        "host": args.host,
        **latency_figures(sent, seen.running, seen.ready, seen.dhcp_failed),
        "memory_baseline_mib": round(seen.memory_baseline_mib, 1),
        "memory_high_water_mib": round(sampler.memory_high_water_mib, 1),
        "control_plane_rss_mib_per_vm": per_vm(
            seen.control_plane_after_mib - seen.control_plane_before_mib, len(seen.running)
        ),
        "control_plane_rss_high_water_mib": round(sampler.control_plane_high_water_mib, 1),
        "qemu_rss_mib_per_vm": per_vm(seen.qemu_rss_mib, seen.qemu_processes),
        "qemu_processes": seen.qemu_processes,
        "allocation_ratios": ratios,
    }
    print(f"density: {result['guests_running']}/{args.guests} Running (p50 "
          f"{result['p50_running_s']}s, p95 {result['p95_running_s']}s), "
          f"{result['guests_ready']} ready (p50 {result['p50_guest_ready_s']}s, p95 "
          f"{result['p95_guest_ready_s']}s, {result['guests_dhcp_failed']} without an "
          f"address); memory {result['memory_baseline_mib']} -> "
          f"{result['memory_high_water_mib']} MiB at most")  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    control_plane = [benchlib.operator_pid(args.operator_pid), machine.agent_pid(args.host)]
    custom, core = benchlib.kube_api(pool_size=args.workers + 4)
    hypervisor = benchlib.get_cluster_object(custom, "hypervisors", args.host) or {}
    status = hypervisor.get("status") or {}
    if status.get("state") != "up" or status.get("virtType") not in ("kvm", "qemu"):
        raise BenchError(f"Hypervisor {args.host} is not an up libvirt/QEMU host: `make dev-up`")
    image = benchlib.get_cluster_object(custom, "images", benchlib.TINY_IMAGE)
    if image is None:
        raise BenchError(f"the Image {benchlib.TINY_IMAGE} is missing: hack/register-image.sh")
    memory = max(MIN_FLAVOR_MEMORY_MIB, int(image["spec"].get("minMemoryMiB") or 0))
    flavor_spec = {"vcpus": 1, "memoryMiB": memory, "diskGiB": 1}
    ratios = required_ratios(status, args.guests, flavor_spec)
    previous = (hypervisor.get("spec") or {}).get("allocationRatios")
    flavor = namespace = f"density-{uuid.uuid4().hex[:6]}"
    creator = GuestCreator(custom, namespace, flavor, args.host)
    watch = instance_watch.InstanceWatch(custom, namespace)
    poller = machine.ReadyPoller(creator.created)
    sampler = machine.MemorySampler(lambda: machine.processes_rss_mib(control_plane))
    failures: list[str] = []
    patched = flavor_made = namespace_made = False
    try:
        log(f"Hypervisor {args.host}: allocation ratios {ratios} (spec had {previous})")
        if ratios["memory"] > 1.0:
            log("memory ratio over 1.0: the guests may need more memory than the host has")
        patched = True
        patch_ratios(custom, args.host, dict(ratios))
        wait_ratios(custom, args.host, ratios, 60)
        custom.create_cluster_custom_object(
            benchlib.GROUP, benchlib.VERSION, "flavors",
            {"apiVersion": benchlib.API_VERSION, "kind": "Flavor", "metadata": {"name": flavor},
             "spec": {**flavor_spec, "description": "density benchmark"}},
        )  # fmt: skip
        flavor_made = True
        core.create_namespace({"metadata": {"name": namespace}})
        namespace_made = True
        seen = measure(args, creator, watch, poller, sampler, control_plane, failures)
        # Printed before the deletes, which take minutes, so that a failing cleanup loses nothing.
        result = report(args, creator.sent_at, seen, sampler, ratios)
    finally:
        sampler.stop()
        poller.stop()
        watch.stop()
        try:
            if namespace_made:
                log(f"deleting the instances of {namespace}")
                if not bench_deletes.cleanup(custom, core, namespace, args.delete_timeout):
                    failures.append("instances were not deleted")
                elif left := machine.wait_qemu_gone(creator.created().values(), QEMU_EXIT_S):
                    failures.append(f"QEMU of {len(left)} deleted guests still runs: {left[:3]}")
            if flavor_made:
                bench_deletes.cleanup_flavor(custom, flavor)
        finally:
            if patched:
                log(f"Hypervisor {args.host}: spec.allocationRatios back to {previous}")
                patch_ratios(custom, args.host, restore_value(previous, ratios))
    for failure in failures:
        print(f"  FAILED: {failure}")
    print(json.dumps(result))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"density_bench: {exc}", file=sys.stderr)
        sys.exit(2)
