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
import dataclasses
import json
import pathlib
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import benchlib
from benchlib import BenchError, log

# The host named in the direct domain's metadata: no agent is called that, so none of them
# treats the domain as its own.
DIRECT_HOST = "lifecycle-bench-direct"
#: How often libvirt is asked for the direct domain's state while it shuts down.
STATE_POLL_S = 0.02


# -- What a round measured, and the figures reported ---------------------------------------


@dataclasses.dataclass
class Round:
    """One round's timings in seconds; None for what was not run (``--direct-only``)."""

    kubenova_stop_s: float | None = None
    kubenova_start_running_s: float | None = None
    kubenova_start_ready_s: float | None = None
    kubenova_reboot_synced_s: float | None = None
    kubenova_reboot_ready_s: float | None = None
    direct_stop_s: float | None = None
    direct_start_ready_s: float | None = None
    direct_reboot_ready_s: float | None = None


#: Each ratio: (its field, the kubenova figure, the direct figure it is compared with).
RATIOS = (
    ("stop_ratio", "kubenova_stop_s", "direct_stop_s"),
    ("start_ratio", "kubenova_start_ready_s", "direct_start_ready_s"),
    ("reboot_ratio", "kubenova_reboot_ready_s", "direct_reboot_ready_s"),
)
#: The order of the JSON line's fields.
FIELDS = (
    "kubenova_stop_s",
    "direct_stop_s",
    "stop_ratio",
    "kubenova_start_running_s",
    "kubenova_start_ready_s",
    "direct_start_ready_s",
    "start_ratio",
    "kubenova_reboot_synced_s",
    "kubenova_reboot_ready_s",
    "direct_reboot_ready_s",
    "reboot_ratio",
)


def medians(rounds: Sequence[Round]) -> dict[str, float | None]:
    """The JSON line: each timing's median over the rounds that have it (seconds, to the
    millisecond), and each ratio of the kubenova median to the direct one. A timing no round
    has is null, and so is any ratio made with it."""
    middle: dict[str, float] = {}
    for field in dataclasses.fields(Round):
        values = [v for r in rounds if (v := getattr(r, field.name)) is not None]
        middle[field.name] = benchlib.median(values)
    result: dict[str, float | None] = {
        name: benchlib.rounded(value) for name, value in middle.items()
    }
    for ratio, kubenova, direct in RATIOS:
        # From the unrounded medians, so that rounding does not move the ratio.
        denominator = middle[direct]
        result[ratio] = benchlib.rounded(
            middle[kubenova] / denominator if denominator > 0 else float("nan")
        )
    return {name: result[name] for name in FIELDS}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def round_line(index: int, measured: Round) -> str:
    """One round of the summary."""
    r = measured
    return (
        f"round {index}: stop kubenova {_seconds(r.kubenova_stop_s)} "
        f"direct {_seconds(r.direct_stop_s)}; "
        f"start kubenova Running {_seconds(r.kubenova_start_running_s)} "
        f"ready {_seconds(r.kubenova_start_ready_s)} direct ready "
        f"{_seconds(r.direct_start_ready_s)}; "
        f"reboot kubenova ready {_seconds(r.kubenova_reboot_ready_s)} "
        f"(Synced {_seconds(r.kubenova_reboot_synced_s)}) direct ready "
        f"{_seconds(r.direct_reboot_ready_s)}"
    )


def summary_line(result: dict[str, float | None], repeat: int, flavor: str, virt: str) -> str:
    """The summary's last line, before the JSON."""

    def figure(name: str) -> str:
        value = result[name]
        return "-" if value is None else f"{value}s"

    def ratio(name: str) -> str:
        value = result[name]
        return "-" if value is None else f"x{value}"

    return (
        f"lifecycle benchmark ({virt}, flavor {flavor}, medians of {repeat}): "
        f"stop kubenova {figure('kubenova_stop_s')} direct {figure('direct_stop_s')} "
        f"{ratio('stop_ratio')}; start ready kubenova {figure('kubenova_start_ready_s')} "
        f"(Running {figure('kubenova_start_running_s')}) direct "
        f"{figure('direct_start_ready_s')} {ratio('start_ratio')}; reboot ready kubenova "
        f"{figure('kubenova_reboot_ready_s')} (Synced {figure('kubenova_reboot_synced_s')}) "
        f"direct {figure('direct_reboot_ready_s')} {ratio('reboot_ratio')}"
    )


# -- Kubenova: patches and the status they lead to ------------------------------------------


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def settled(obj: dict[str, Any], generation: int, phase: str) -> bool:
    """Whether the Instance ``obj`` shows the spec at ``generation`` applied, no task running,
    in ``phase``. Raises BenchError when the status says it will not be: phase Error, or Synced
    False (refused or failed) for that generation."""
    name = (obj.get("metadata") or {}).get("name")
    status = obj.get("status") or {}
    if status.get("phase") == "Error":
        raise BenchError(f"instance {name} went to Error: {status.get('fault')}")
    if _int(status.get("observedGeneration")) < generation or status.get("taskState"):
        return False
    synced = next(
        (
            c
            for c in status.get("conditions") or []
            if isinstance(c, dict) and c.get("type") == "Synced"
        ),
        None,
    )
    if synced is None or _int(synced.get("observedGeneration")) < generation:
        return False
    if synced.get("reason") == "InProgress":
        return False
    if synced.get("status") == "False":
        raise BenchError(
            f"instance {name}: generation {generation} was not applied: "
            f"{synced.get('reason')}: {synced.get('message')}"
        )
    return synced.get("status") == "True" and status.get("phase") == phase


def patch_instance(custom: Any, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch the Instance's spec; the object the apiserver answered with."""
    obj: dict[str, Any] = custom.patch_namespaced_custom_object(
        benchlib.GROUP,
        benchlib.VERSION,
        namespace,
        "instances",
        name,
        {"spec": spec},
        _content_type="application/merge-patch+json",
    )
    return obj


def wait_settled(
    custom: Any, namespace: str, answer: dict[str, Any], phase: str, deadline: float
) -> float:
    """Watch the Instance from the resourceVersion of ``answer`` (a create's or patch's) until
    it has :func:`settled` at ``answer``'s generation in ``phase``; the monotonic time that was
    seen. Starting at that resourceVersion, no status written after the call is missed."""
    from kubernetes import watch
    from kubernetes.client import exceptions

    name = answer["metadata"]["name"]
    generation = int(answer["metadata"]["generation"])
    version = answer["metadata"]["resourceVersion"]
    if settled(answer, generation, phase):
        return time.monotonic()
    while (remaining := deadline - time.monotonic()) > 0:
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                custom.list_namespaced_custom_object,
                benchlib.GROUP,
                benchlib.VERSION,
                namespace,
                "instances",
                field_selector=f"metadata.name={name}",
                resource_version=version,
                timeout_seconds=max(1, int(remaining)),
            ):
                obj = event["object"]
                if event["type"] == "ERROR":  # 410 Gone is raised by the client itself
                    raise BenchError(f"the watch of {namespace}/{name} failed: {obj}")
                if event["type"] == "DELETED":
                    raise BenchError(f"instance {namespace}/{name} was deleted meanwhile")
                version = obj["metadata"]["resourceVersion"]
                if settled(obj, generation, phase):
                    return time.monotonic()
        except exceptions.ApiException as exc:
            if exc.status != 410:
                raise
            # The version is too old to watch from: read the object, go on from its version.
            obj = custom.get_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, namespace, "instances", name
            )
            if settled(obj, generation, phase):
                return time.monotonic()
            version = obj["metadata"]["resourceVersion"]
        finally:
            stream.stop()  # type: ignore[no-untyped-call]
    raise BenchError(f"instance {namespace}/{name} was not {phase} and Synced in time")


class ReadyWatch:
    """Waits in a thread of its own for a console's ready count to go past ``above``, so that
    the moment the guest is up is taken even while the API is being watched."""

    def __init__(self, console_log: pathlib.Path, above: int, deadline: float) -> None:
        self._stop = threading.Event()
        self._ready_at: float | None = None
        self._error: BaseException | None = None
        self._deadline = deadline
        self._thread = threading.Thread(
            target=self._run, args=(console_log, above, deadline), daemon=True
        )
        self._thread.start()

    def _run(self, console_log: pathlib.Path, above: int, deadline: float) -> None:
        try:
            self._ready_at = benchlib.wait_ready_count(
                console_log, above, deadline, stop=self._stop
            )
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> float:
        """The monotonic time the guest was ready."""
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 1)
        if self._error is not None:
            raise self._error
        if self._ready_at is None:
            raise BenchError("the console was not read in time")
        return self._ready_at

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()


class KubenovaGuest:
    """The benchmark's Instance on ``host``: boot, the timed operations, deletion."""

    def __init__(
        self, custom: Any, namespace: str, name: str, flavor: str, host: str, timeout: float
    ) -> None:
        self.custom, self.namespace, self.name = custom, namespace, name
        self.flavor, self.host, self.timeout = flavor, host, timeout
        self.console_log = pathlib.Path()

    def boot(self) -> float:
        """Create the Instance and wait until it is Running and its guest ready; the time that
        took (a boot, not one of the operations compared)."""
        body = {
            "apiVersion": benchlib.API_VERSION,
            "kind": "Instance",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "flavor": self.flavor,
                "image": benchlib.TINY_IMAGE,
                "forcedHost": self.host,
                "powerState": "Running",
            },
        }
        started = time.monotonic()
        created = self.custom.create_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, self.namespace, "instances", body
        )
        self.console_log = benchlib.INSTANCES_PATH / created["metadata"]["uid"] / "console.log"
        ready = ReadyWatch(self.console_log, 0, started + self.timeout)
        try:
            wait_settled(self.custom, self.namespace, created, "Running", started + self.timeout)
            obj = self.custom.get_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, self.namespace, "instances", self.name
            )
            # Checked before waiting for the console, which another host's guest never writes.
            placed = (obj.get("status") or {}).get("host")
            if placed != self.host:
                raise BenchError(f"{self.name} runs on {placed!r}, not on {self.host!r}")
            ready_at = ready.result()
        finally:
            ready.cancel()
        return ready_at - started

    def stop(self) -> float:
        """powerState Stopped -> Stopped and Synced."""
        started = time.monotonic()
        answer = patch_instance(self.custom, self.namespace, self.name, {"powerState": "Stopped"})
        done = wait_settled(self.custom, self.namespace, answer, "Stopped", started + self.timeout)
        return done - started

    def start(self) -> tuple[float, float]:
        """powerState Running -> (Running and Synced, one more ready line)."""
        return self._until_up({"powerState": "Running"})

    def reboot(self) -> tuple[float, float]:
        """A soft reboot request -> (Synced, one more ready line)."""
        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        return self._until_up({"reboot": {"requestedAt": stamp, "type": "Soft"}})

    def _until_up(self, spec: dict[str, Any]) -> tuple[float, float]:
        before = benchlib.ready_count(self.console_log)
        started = time.monotonic()
        deadline = started + self.timeout
        # Watching the console from before the patch: the guest may be up before the status
        # says the operation is done.
        ready = ReadyWatch(self.console_log, before, deadline)
        try:
            answer = patch_instance(self.custom, self.namespace, self.name, spec)
            synced_at = wait_settled(self.custom, self.namespace, answer, "Running", deadline)
            ready_at = ready.result()
        finally:
            ready.cancel()
        return synced_at - started, ready_at - started

    def delete(self) -> None:
        """Delete the Instance and wait until it is gone. Tried even when the create call
        did not answer (an interrupted call may still have made it); a missing one is gone."""
        benchlib.delete_instance(self.custom, self.namespace, self.name, self.timeout)


# -- Direct: the same calls on libvirt -------------------------------------------------------


def wait_shutoff(domain: Any, deadline: float) -> float:
    """Poll the domain's state every STATE_POLL_S until libvirt reports it SHUTOFF; the
    monotonic time that was seen."""
    import libvirt

    while time.monotonic() < deadline:
        if domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
            return time.monotonic()
        time.sleep(STATE_POLL_S)
    raise BenchError(f"domain {domain.name()} did not shut off in time")


class DirectOps:
    """The timed calls on a guest of ``benchlib.define_direct_guest``."""

    def __init__(self, guest: benchlib.DirectGuest, timeout: float) -> None:
        self.guest, self.timeout = guest, timeout

    def boot(self) -> float:
        """Start it the first time, until ready (not compared)."""
        return self.start()

    def stop(self) -> float:
        """``shutdown()`` (ACPI) until SHUTOFF."""
        started = time.monotonic()
        self.guest.domain.shutdown()
        return wait_shutoff(self.guest.domain, started + self.timeout) - started

    def start(self) -> float:
        """``create()`` until one more ready line."""
        before = benchlib.ready_count(self.guest.console_log)
        started = time.monotonic()
        self.guest.domain.create()
        ready_at = benchlib.wait_ready_count(self.guest.console_log, before, started + self.timeout)
        return ready_at - started

    def reboot(self) -> float:
        """Nova's soft reboot: ``shutdown()``, SHUTOFF, ``create()``, until one more ready
        line."""
        before = benchlib.ready_count(self.guest.console_log)
        started = time.monotonic()
        deadline = started + self.timeout
        self.guest.domain.shutdown()
        wait_shutoff(self.guest.domain, deadline)
        self.guest.domain.create()
        return benchlib.wait_ready_count(self.guest.console_log, before, deadline) - started


# -- The run ---------------------------------------------------------------------------------


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
