"""Lifecycle benchmark: stop, start and soft reboot of a real guest through Kubenova against the
same calls made directly through libvirt.

    .venv/bin/python hack/bench/lifecycle_bench.py [--repeat 3] [--host vm] [--flavor m1.nano]
    .venv/bin/python hack/bench/lifecycle_bench.py --direct-only   # the libvirt side alone

It needs the local stack of `make dev-up`, with the agent of host ``--host`` (the libvirt driver,
real QEMU) running. Two guests of the image kubenova-tiny, each booted once before any timing:

kubenova   an Instance placed on ``--host`` (``spec.forcedHost``: simulated hosts that are up
           would otherwise take it). Each operation is a merge patch of its spec, timed from
           the patch call until a watch (from the patch's resourceVersion) sees the operation
           settled at the patch's generation: ``status.taskState`` null and the ``Synced``
           condition True with that ``observedGeneration``, and ``status.phase`` the one wanted.
             stop    ``spec.powerState: Stopped``, until phase Stopped.
             start   ``spec.powerState: Running``, until phase Running ("running") and until
                     the console log (``$KUBENOVA_INSTANCES_PATH/<uid>/console.log``) has one
                     more ``kubenova-guest: ready`` line than before the patch ("ready").
             reboot  ``spec.reboot: {requestedAt: <new stamp>, type: Soft}``, until the console
                     has one more ready line ("ready"), and until settled ("synced").
direct     the same guest without Kubenova, made with the agent's own helpers (benchlib's
           ``define_direct_guest``), its metadata naming a host no agent has, so no agent
           adopts it. The calls are those Nova's libvirt driver makes:
             stop    ``shutdown()`` (the ACPI power button), until libvirt reports SHUTOFF
                     (``state()`` polled every 20 ms, where Nova polls every second and the
                     agent every 100 ms: the figure is the guest's, not a poll's).
             start   ``create()``, until one more ready line.
             reboot  a soft reboot as Nova's driver does it: ``shutdown()``, SHUTOFF, then
                     ``create()``, until one more ready line.

So that each timed operation has the machine to itself (TCG guests are slow), only the guest
being timed runs at any moment. The kubenova guest is left running after its boot and the
direct one shut off after its own; each of the ``--repeat`` rounds is then: kubenova stop,
direct start, direct reboot, direct stop, kubenova start, kubenova reboot. Both guests are
deleted at the end, also after an error or Ctrl-C.

The summary shows every round; the last line is one JSON object of medians: kubenova_stop_s,
direct_stop_s, stop_ratio, kubenova_start_running_s, kubenova_start_ready_s,
direct_start_ready_s, start_ratio, kubenova_reboot_synced_s, kubenova_reboot_ready_s,
direct_reboot_ready_s, reboot_ratio. Each ratio is the kubenova median over the direct median
(start and reboot compare the guest being ready). ``--direct-only`` checks the libvirt side
alone: no Instance is made and no agent is needed (only the Flavor and Image objects are read);
the kubenova figures and the ratios are then null.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import uuid
from typing import Any

import benchlib
from benchlib import BenchError, log
from lifecycle_figures import Round, medians, round_line, summary_line
from lifecycle_guests import DirectOps, KubenovaGuest

# The host named in the direct domain's metadata: no agent is called that, so none of them
# treats the domain as its own.
DIRECT_HOST = "lifecycle-bench-direct"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each (alternating)")
    parser.add_argument("--host", default="vm", help="the real host the agent runs for")
    parser.add_argument("--flavor", default="m1.nano")
    parser.add_argument("--namespace", default="default")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds per boot and per operation"
    )
    parser.add_argument(
        "--direct-only",
        action="store_true",
        help="time the libvirt side alone, to check it: no Instance, no agent needed",
    )
    parser.add_argument(
        "--virt-type",
        choices=("kvm", "qemu"),
        help="domain type of the direct guest (default: the one the Hypervisor --host reports)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def virt_type_of(custom: Any, args: argparse.Namespace) -> str:
    """The domain type both guests run with: the host's agent's, unless ``--virt-type`` says.
    Without ``--direct-only`` the host's agent must be up."""
    hypervisor = benchlib.get_cluster_object(custom, "hypervisors", args.host)
    status = (hypervisor or {}).get("status") or {}
    if not args.direct_only and status.get("state") != "up":
        raise BenchError(
            f"Hypervisor {args.host} is not up: is the agent of `make dev-up` running?"
        )
    virt_type = args.virt_type or status.get("virtType")
    if virt_type not in ("kvm", "qemu"):
        raise BenchError(
            f"Hypervisor {args.host} is not a libvirt/QEMU host ({virt_type!r}); "
            "name the domain type with --virt-type"
        )
    if args.virt_type and not args.direct_only and args.virt_type != status.get("virtType"):
        raise BenchError(
            f"--virt-type {args.virt_type} differs from the host's {status.get('virtType')}: "
            "the two sides would not run the same guest"
        )
    return str(virt_type)


def run(args: argparse.Namespace) -> tuple[str, list[Round]]:
    """Boot both guests, time ``--repeat`` rounds, delete both; (domain type, rounds)."""
    import libvirt

    custom, _ = benchlib.kube_api()
    virt_type = virt_type_of(custom, args)
    flavor = benchlib.get_cluster_object(custom, "flavors", args.flavor)
    image = benchlib.get_cluster_object(custom, "images", benchlib.TINY_IMAGE)
    if flavor is None or image is None:
        raise BenchError(f"Flavor {args.flavor} or Image {benchlib.TINY_IMAGE} is missing")
    run_id = uuid.uuid4().hex[:6]
    kubenova = (
        None
        if args.direct_only
        else KubenovaGuest(
            custom,
            args.namespace,
            f"lifecycle-bench-{run_id}",
            args.flavor,
            args.host,
            args.timeout,
        )
    )
    connection = libvirt.open("qemu:///system")
    guest = None
    rounds: list[Round] = []
    try:
        guest = benchlib.define_direct_guest(
            connection, flavor["spec"], image["spec"], virt_type, DIRECT_HOST, DIRECT_HOST
        )
        direct = DirectOps(guest, args.timeout)
        # Booted first and shut off again, so that the kubenova guest boots alone and each
        # round starts with only the kubenova guest running.
        log(f"direct guest {guest.domain.name()} ({virt_type}): booting")
        log(f"direct guest booted in {direct.boot():.2f}s")
        direct.stop()
        if kubenova is not None:
            log(f"Instance {args.namespace}/{kubenova.name} on {args.host}: booting")
            log(f"Instance booted in {kubenova.boot():.2f}s")
        for index in range(1, args.repeat + 1):
            measured = Round()
            log(f"round {index}/{args.repeat}")
            if kubenova is not None:
                measured.kubenova_stop_s = kubenova.stop()
            measured.direct_start_ready_s = direct.start()
            measured.direct_reboot_ready_s = direct.reboot()
            measured.direct_stop_s = direct.stop()
            if kubenova is not None:
                running, ready = kubenova.start()
                measured.kubenova_start_running_s = running
                measured.kubenova_start_ready_s = ready
                synced, ready = kubenova.reboot()
                measured.kubenova_reboot_synced_s = synced
                measured.kubenova_reboot_ready_s = ready
            rounds.append(measured)
            print(round_line(index, measured), flush=True)
    finally:
        # Each cleanup on its own: one failing must not leave the other guest behind.
        try:
            if kubenova is not None:
                log(f"deleting Instance {args.namespace}/{kubenova.name}")
                kubenova.delete()
        finally:
            try:
                if guest is not None:
                    benchlib.remove_direct_guest(guest)
            finally:
                connection.close()
    return virt_type, rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    virt_type, rounds = run(args)
    result = medians(rounds)
    print(summary_line(result, args.repeat, args.flavor, virt_type))
    print(json.dumps(result))
    return 0


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM ends the run as Ctrl-C does: through the cleanup of both guests.
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"lifecycle_bench: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("lifecycle_bench: interrupted", file=sys.stderr)
        sys.exit(130)
