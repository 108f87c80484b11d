"""The chaos suite's faults by name, its command line, and the plan it prints.

Pure: nothing here touches the stack. ``--list`` prints :data:`FAULTS`; ``--dry-run`` prints
:func:`plan_lines`, what a run would do, fault by fault.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import socket
from collections.abc import Mapping, Sequence

#: The simulated hosts' name prefix (and their kubenova.io/sim-prefix label).
PREFIX = "chaos"
#: The simulated host whose network the suite can cut: its agent runs in a process of its own
#: and reaches RabbitMQ through the suite's proxy.
NET_HOST = f"{PREFIX}-net-001"
#: The goal: every count 0, converged this soon after the recovery.
GOAL_CONVERGED_S = 120


@dataclasses.dataclass(frozen=True)
class Fault:
    """What one fault does: how it is injected, how it is recovered, and when it counts as
    recovered (where ``converged_s`` starts)."""

    name: str
    inject: str
    recover: str
    recovered_when: str
    #: What must be there for it to run; without it the fault prints a skip line.
    needs: str
    #: ``real``: the burst is a handful of real guests on this machine's host.
    guests: str = "simulated"


FAULTS: tuple[Fault, ...] = (
    Fault(
        "operator-kill",
        "SIGKILL the operator of `make dev-up` (.kubenova/run/operator.pid)",
        "hack/stack.sh start, in the killed operator's own environment",
        "the new operator process runs",
        "the operator's pid in .kubenova/run/operator.pid",
    ),
    Fault(
        "operator-pod-delete",
        "delete the chart's active operator pod (the holder of the Lease "
        "kubenova-system/kubenova-operator)",
        "none: the Deployment's standby takes the Lease",
        "another operator pod holds the Lease",
        "the chart's operators (`make up`), which `make dev-up` does not run: skipped there",
    ),
    Fault(
        "agent-kill",
        "SIGKILL one agent process of the simulated hosts (hack/sim-hosts.sh kill "
        f"--prefix {PREFIX} --process J: its hosts, the others keep serving)",
        f"hack/sim-hosts.sh start --prefix {PREFIX}: a new process for the hosts no live "
        "process serves",
        "the new process is started",
        "a live agent process of the chaos hosts",
    ),
    Fault(
        "rabbitmq-restart",
        "stop RabbitMQ (hack/services.sh's rabbitmq_down)",
        "start it (rabbitmq_up)",
        "the broker has started and its users are in place",
        "a broker hack/services.sh started (.kubenova/run/rabbitmq.pid)",
    ),
    Fault(
        "mariadb-restart",
        "stop MariaDB (hack/services.sh's mariadb_down)",
        "start it (mariadb_up)",
        "the server answers and its database and user are in place",
        "a server hack/services.sh started (.kubenova/run/mariadb.pid)",
    ),
    Fault(
        "apiserver-restart",
        "SIGTERM the kube-apiserver and its embedded etcd (.kubenova/run/kube.pid; SIGKILL "
        "after 60 s, as hack/kube/down.sh)",
        "hack/kube/up.sh",
        "/readyz answers ok",
        "the apiserver hack/kube/up.sh started (.kubenova/run/kube.pid)",
    ),
    Fault(
        "network-drop",
        f"cut {NET_HOST}'s line to RabbitMQ (the suite's proxy closes its connections and "
        "resets new ones) for service_down_time + 15 s",
        "restore the line",
        "the proxy forwards again",
        f"{NET_HOST}, which the suite starts",
    ),
    Fault(
        "operator-kill-real",
        "as operator-kill, with a handful of real guests of kubenova-tiny on this machine's "
        "host (libvirt qemu:///system)",
        "hack/stack.sh start, in the killed operator's own environment",
        "the new operator process runs",
        "the operator's pid file, and this machine's Hypervisor up (--real-host)",
        guests="real",
    ),
)
FAULT_NAMES = tuple(fault.name for fault in FAULTS)


def fault(name: str) -> Fault:
    return next(f for f in FAULTS if f.name == name)


def parse_faults(text: str) -> list[str]:
    """``a,b,c`` -> the faults, in the order given, each once; ValueError naming an unknown
    one."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if name not in FAULT_NAMES:
            raise ValueError(f"--faults: unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("--faults names no fault")
    return names


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"wants a positive number of seconds, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"wants a number of seconds, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hack/chaos/chaos.py",
        description="Faults in the middle of a burst of instances on the `make dev-up` stack, "
        "then what was lost (docs/chaos.md).",
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_NAMES),
        help="comma-separated, in this order (default: all; see --list)",
    )
    parser.add_argument("--instances", type=int, default=200, help="instances in each burst")
    parser.add_argument(
        "--hosts",
        type=int,
        default=20,
        help=f"simulated hosts, {NET_HOST} (the one whose network is cut) included",
    )
    parser.add_argument(
        "--processes", type=int, default=4, help="agent processes the other hosts are spread over"
    )
    parser.add_argument(
        "--timeout", type=_positive, default=300, help="seconds from recovery to give up"
    )
    parser.add_argument(
        "--settle",
        type=_non_negative,
        help="seconds the converged state must hold (default: two audit intervals + 5)",
    )
    parser.add_argument(
        "--hold", type=_non_negative, default=5, help="seconds a fault lasts before its recovery"
    )
    parser.add_argument("--real-guests", type=int, default=4, help="guests of operator-kill-real")
    parser.add_argument(
        "--real-host",
        default=os.environ.get("KUBENOVA_HOST") or socket.gethostname().split(".")[0],
        help="this machine's hypervisor host (default: $KUBENOVA_HOST or the short hostname)",
    )
    parser.add_argument("--workers", type=int, default=16, help="concurrent create calls")
    parser.add_argument(
        "--free-timeout",
        type=_positive,
        default=120,
        help="seconds for claims and domains to go once a burst is deleted",
    )
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and exit, touching nothing"
    )
    args = parser.parse_args(argv)
    try:
        args.faults = parse_faults(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    if args.instances < 2:
        parser.error("--instances must be at least 2 (the fault comes at half of them)")
    if args.hosts < 2:
        parser.error(f"--hosts must be at least 2: {NET_HOST} and one more")
    if not 1 <= args.processes <= args.hosts - 1:
        parser.error(f"--processes must be between 1 and --hosts - 1 ({args.hosts - 1})")
    if args.real_guests < 1 or args.workers < 1:
        parser.error("--real-guests and --workers must be positive")
    return args


@dataclasses.dataclass(frozen=True)
class StackSettings:
    """The operator's settings the suite times itself by."""

    service_down_time_s: int
    audit_interval_s: float

    def settle_s(self, explicit: float | None) -> float:
        """How long a converged state must hold: ``explicit``, else two audit intervals and
        5 s (a missing domain shows only when two audits in a row agree)."""
        return explicit if explicit is not None else 2 * self.audit_interval_s + 5

    def network_hold_s(self) -> float:
        """How long the network fault lasts: long enough for the host to be declared down."""
        return self.service_down_time_s + 15


def stack_settings(environ: Mapping[str, str]) -> StackSettings:
    """From the operator's environment, with the operator's own defaults (60 s each);
    ValueError naming the variable when one is not a positive number."""
    from kubenova import config

    defaults = config.OperatorSettings()
    values: dict[str, float] = {}
    for variable, default in (
        ("KUBENOVA_SERVICE_DOWN_TIME", float(defaults.service_down_time_s)),
        ("KUBENOVA_AUDIT_INTERVAL", defaults.audit_interval_s),
    ):
        raw = environ.get(variable)
        try:
            value = float(raw) if raw not in (None, "") else default
        except ValueError:
            raise ValueError(f"{variable} must be a number of seconds, got {raw!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{variable} must be a positive number of seconds, got {raw!r}")
        values[variable] = value
    return StackSettings(
        service_down_time_s=int(values["KUBENOVA_SERVICE_DOWN_TIME"]),
        audit_interval_s=values["KUBENOVA_AUDIT_INTERVAL"],
    )


def sim_host_count(hosts: int) -> int:
    """The hosts hack/sim-hosts.sh runs: all but the one behind the proxy."""
    return hosts - 1


def hold_s(name: str, args: argparse.Namespace, settings: StackSettings) -> float:
    return settings.network_hold_s() if name == "network-drop" else float(args.hold)


def list_lines() -> list[str]:
    lines = []
    for f in FAULTS:
        lines.append(f"{f.name}  ({f.guests} guests)")
        lines.append(f"    inject:    {f.inject}")
        lines.append(f"    recover:   {f.recover}")
        lines.append(f"    recovered: when {f.recovered_when} (converged_s counts from here)")
        lines.append(f"    needs:     {f.needs}")
    return lines


def plan_lines(args: argparse.Namespace, settings: StackSettings, source: str) -> list[str]:
    """What a run would do; ``source`` says where ``settings`` came from."""
    sims = sim_host_count(args.hosts)
    lines = [
        f"chaos plan: {len(args.faults)} faults, each in the middle of a burst in a namespace "
        "of its own",
        f"  hosts: {PREFIX}-001..{PREFIX}-{sims:03d} in {args.processes} agent processes "
        f"(hack/sim-hosts.sh), and {NET_HOST} in a process of its own behind the suite's "
        "proxy; all labelled kubenova.io/sim-prefix=chaos",
        f"  service_down_time {settings.service_down_time_s}s, audit every "
        f"{settings.audit_interval_s:g}s ({source})",
        f"  converged: every Instance Running or failed with a reason, no task state, hosts up, "
        f"audits without differences, counts unchanged for {settings.settle_s(args.settle):g}s; "
        f"given up {args.timeout:g}s after the recovery",
    ]
    for index, name in enumerate(args.faults, start=1):
        f = fault(name)
        if f.guests == "real":
            burst = f"{args.real_guests} real guests forced onto {args.real_host}"
            at = max(1, args.real_guests // 2)
        else:
            burst = f"{args.instances} instances on the chaos hosts"
            at = max(1, args.instances // 2)
        lines += [
            f"  {index}. {name}: {burst}, burst from {args.workers} threads",
            f"     at {at} creates answered: {f.inject}",
            f"     hold {hold_s(name, args, settings):g}s, then recover: {f.recover}",
            f"     converged_s from when {f.recovered_when}",
            f"     needs {f.needs}",
            "     then delete the burst; its claims and domains must go within "
            f"{args.free_timeout:g}s",
        ]
    return lines
