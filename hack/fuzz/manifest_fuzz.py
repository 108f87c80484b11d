"""A fuzz of the apiserver and the operator with malformed and hostile manifests: Instances,
Flavors, Images and ServerGroups (``make fuzz-manifests``).

    .venv/bin/python hack/fuzz/manifest_fuzz.py [--seed 20261207] [--count 1000]
        [--namespace NS] [--operator-log PATH] [--hosts 5] [--field-validation Strict]
        [--settle-timeout 300] [--cleanup-timeout 300] [--operator-pid PID] [--tag TAG]
        [--dry-run [--list]]

It needs the running stack of `make dev-up`. It generates --count manifests from --seed
(:mod:`mutations`; a quarter of each kind), starts --hosts simulated hosts with prefix ``fuzz``
(hack/sim-hosts.sh), creates in a fresh namespace (or --namespace) the valid Flavor, Image and
ServerGroup the fuzzed Instances refer to, then creates every manifest through the apiserver
(with fieldValidation=Strict, as kubectl does), one after the other: Flavors, Images,
ServerGroups, Instances. Every Instance selects the ``fuzz`` hosts (or none), so nothing lands
on this machine's real host.

Each answer is classified: refused (HTTP 4xx), and then whether the refusal names the field
that was mutated (:mod:`refusals`); accepted; or an error (5xx, no answer). Then it waits up
to --settle-timeout for the accepted Instances to settle (Running, Error, Stopped..., or
Pending with a reason), builds the domain XML and config drive of each in process with the
agent's builders and checks that no hostile value changed them (:mod:`content_check`),
deletes everything it made, counts the exceptions in the lines the operator's log
(--operator-log) and the simulated agents' logs (.kubenova/logs/sim-fuzz-*.log) got during
the run (:mod:`log_scan`), and retires its simulated hosts (hack/sim-hosts.sh retire).
Builder probes put every hostile value, in process, where a manifest cannot put it (the
instance's name, the image's name) as well; what they find is reported, not failed on.

It prints a summary, then, as its last line, one JSON object:

    manifests                 how many were sent
    Instance, Flavor, Image,  per kind: sent, refused, refused_without_field, accepted,
    ServerGroup               errors
    operator_exceptions       exception lines in the operator's log during the run
    agent_exceptions          the same in the simulated agents' logs
    content_changed           problems found in the accepted Instances' XML and config drive
    seed                      the seed (a run with it sends the same manifests again)
    namespace, families       where it ran; the per-kind counts per mutation family
    errors                    answers that were neither a refusal nor an acceptance
    operator_error_lines      ERROR lines without an exception (kopf's retries among them)
    content_checked           accepted Instances checked in process
    content_not_buildable     accepted Instances no agent is handed (user data over 64 KiB,
                              or a value of a type the CRD forbids)
    builder_probes            {checked, changed}: the probes above
    instance_phases           how the accepted Instances settled
    unsettled, misplaced      accepted Instances that did not settle, or landed on a host
                              that is not a fuzz host
    cleanup_left              objects it could not delete
    refused_without_field_cases   the first 20 such refusals

It exits 1 when a refusal did not name its field, an exception was logged, content changed,
an answer was an error, or an accepted Instance did not settle or landed elsewhere; 2 when it
cannot run. --dry-run generates the manifests, prints how many of each kind and family it
would send (--list: and what each one's mutation is), runs the builder probes and exits,
without contacting the apiserver.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import pathlib
import sys
import time
import uuid
from types import ModuleType
from typing import Any

import content_check
import fuzz_report
import hostile_values as hv
import log_scan
import manifests
import mutations
from fuzz_run import (
    FuzzError,
    Made,
    Outcome,
    Sender,
    create_base_objects,
    delete_made,
    log,
    settled_phase,
    wait_hosts_up,
    wait_settled,
)
from manifests import FLAVOR, IMAGE, INSTANCE, KINDS, SIM_PREFIX

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "hack" / "bench"
DEFAULT_SEED = 20261207


def bench_library() -> ModuleType:
    """hack/bench/benchlib.py: the local stack's settings, Kubernetes access and simulated
    hosts. hack/bench is a directory of scripts, not a package, so it goes on sys.path."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.append(str(BENCH_DIR))
    return importlib.import_module("benchlib")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=1000, help="manifests, a quarter per kind")
    parser.add_argument("--namespace", help="default: a fresh one, deleted at the end")
    parser.add_argument(
        "--operator-log", type=pathlib.Path, default=ROOT / ".kubenova" / "logs" / "operator.log"
    )
    parser.add_argument("--hosts", type=int, default=5, help="simulated hosts (prefix fuzz)")
    parser.add_argument(
        "--field-validation", choices=("Strict", "Warn", "Ignore"), default="Strict"
    )
    parser.add_argument("--settle-timeout", type=float, default=300, help="seconds")
    parser.add_argument("--cleanup-timeout", type=float, default=300, help="seconds")
    parser.add_argument("--operator-pid", type=int)
    parser.add_argument("--tag", help="in every name the run gives (default: random)")
    parser.add_argument("--dry-run", action="store_true", help="generate and count; send nothing")
    parser.add_argument(
        "--list", action="store_true", help="with --dry-run: every manifest's change"
    )
    args = parser.parse_args(argv)
    if args.count < len(KINDS):
        parser.error(f"--count must be at least {len(KINDS)} (one of each kind)")
    if not 1 <= args.hosts <= 999:
        parser.error("--hosts must be between 1 and 999")
    return args


def run_probes() -> tuple[int, list[str]]:
    """Every hostile value where an agent writes a user's text, in process
    (:func:`content_check.probe_spec`): how many, and the problems found."""
    values = (
        *hv.ALL_HOSTILE,
        *hv.INVALID_DNS_NAMES,
        hv.huge_text(65536),
        hv.huge_unicode(16384),
    )
    problems = []
    for value in values:
        stored = hv.as_stored(value)
        for problem in content_check.check(
            content_check.probe_spec(stored, manifests.BASE_SSH_KEY)
        ):
            problems.append(f"value {stored[:40]!r}: {problem}")
    return len(values), problems


class Fuzz:
    """One run against the stack."""

    def __init__(
        self, args: argparse.Namespace, bench: ModuleType, cases: list[mutations.Case], tag: str
    ) -> None:
        self.args = args
        self.bench = bench
        self.cases = cases
        self.names = manifests.RunNames(tag)
        self.namespace = args.namespace or f"fuzz-{tag}"
        self.hosts = [f"{SIM_PREFIX}-{index:03d}" for index in range(1, args.hosts + 1)]
        self.made = Made()
        self.base: dict[str, dict[str, Any]] = {}
        self.outcomes: list[Outcome] = []

    def send_all(self, sender: Sender) -> None:
        self.base = create_base_objects(sender, self.names)
        for kind_name, stored in self.base.items():
            self.made.add(manifests.KIND_BY_NAME[kind_name], stored)
        started = time.monotonic()
        for number, case in enumerate(self.cases, 1):
            outcome = sender.send(case)
            self.outcomes.append(outcome)
            if outcome.result == "accepted" and outcome.stored is not None:
                self.made.add(case.kind, outcome.stored)
            if number % 100 == 0:
                log(f"{number}/{len(self.cases)} sent in {time.monotonic() - started:.0f}s")

    def accepted(self, kind: manifests.Kind) -> list[dict[str, Any]]:
        return [
            o.stored for o in self.outcomes
            if o.case.kind is kind and o.result == "accepted" and o.stored is not None
        ]  # fmt: skip

    def settle(self, custom: Any) -> tuple[dict[str, int], list[str], list[str]]:
        """How the accepted Instances settled, which did not, and which landed elsewhere."""
        names = [obj["metadata"]["name"] for obj in self.accepted(INSTANCE)]
        log(f"waiting up to {self.args.settle_timeout:.0f}s for {len(names)} Instances to settle")
        seen = wait_settled(custom, self.namespace, names, self.args.settle_timeout)
        phases: collections.Counter[str] = collections.Counter()
        unsettled, misplaced = [], []
        for name in names:
            obj = seen.get(name, {})
            status = obj.get("status") or {}
            phase = settled_phase(obj)
            if phase is None:
                unsettled.append(f"{name}: phase {status.get('phase')!r}")
            else:
                phases[phase] += 1
            host = status.get("host")
            if host and host not in self.hosts:
                misplaced.append(f"{name}: on {host}")
        return dict(phases), unsettled, misplaced

    def check_content(self) -> tuple[int, list[str], int]:
        """Build each accepted Instance's XML and config drive in process: how many were
        checked, the problems, how many no agent would be handed."""
        flavors = {o["metadata"]["name"]: o["spec"] for o in self.accepted(FLAVOR)}
        images = {o["metadata"]["name"]: o["spec"] for o in self.accepted(IMAGE)}
        base_flavor, base_image = self.base[FLAVOR.name]["spec"], self.base[IMAGE.name]["spec"]
        checked, problems, not_buildable = 0, [], 0
        for outcome in self.outcomes:
            if outcome.case.kind is not INSTANCE or outcome.stored is None:
                continue
            try:
                spec = outcome.stored["spec"]
                flavor = flavors.get(spec["flavor"], base_flavor)
                image = images.get(spec["image"], base_image)
                instance = content_check.spec_of(outcome.stored, flavor, image)
            except (AttributeError, KeyError, TypeError, ValueError):
                # What the agent's value types refuse (user data over 64 KiB), or a spec the
                # schema should not have let through: no agent is handed it.
                not_buildable += 1
                continue
            checked += 1
            problems += [
                f"{fuzz_report.case_line(outcome.case)}: {p}" for p in content_check.check(instance)
            ]
        return checked, problems, not_buildable

    def run(self, probes: tuple[int, list[str]]) -> int:
        """Send, settle, check, delete, scan the logs; print the report; the exit status."""
        custom, core = self.bench.kube_api()
        self.bench.operator_pid(self.args.operator_pid)
        logs = Logs(self.args.operator_log, self.bench.STATE / "logs")
        created_namespace = hosts_started = False
        settled: tuple[dict[str, int], list[str], list[str]] = ({}, [], [])
        content: tuple[int, list[str], int] = (0, [], 0)
        try:
            if self.args.namespace is None:
                core.create_namespace({"metadata": {"name": self.namespace}})
                created_namespace = True
            since = time.time()
            hosts_started = True
            log(f"starting {len(self.hosts)} simulated hosts ({SIM_PREFIX}-*)")
            self.bench.sim_hosts("start", str(len(self.hosts)), "--prefix", SIM_PREFIX)
            wait_hosts_up(custom, self.hosts, since, 180)
            log(f"sending {len(self.cases)} manifests (namespace {self.namespace})")
            self.send_all(Sender(custom, self.namespace, self.args.field_validation))
            settled = self.settle(custom)
            content = self.check_content()
        finally:
            try:
                log("deleting what the run made")
                left = delete_made(custom, self.namespace, self.made, self.args.cleanup_timeout)
                if created_namespace:
                    core.delete_namespace(self.namespace)
                # The agents' logs before they stop: a shutdown is not the fuzz's doing.
                operator, agents = logs.scan()
            finally:
                if hosts_started:
                    # Stopped, and their Hypervisors deleted: not left listed as down.
                    self.bench.sim_hosts("retire", "--prefix", SIM_PREFIX)
        findings = fuzz_report.Findings(
            operator=operator,
            agents=agents,
            content_checked=content[0],
            content_problems=content[1],
            content_not_buildable=content[2],
            probes_checked=probes[0],
            probe_problems=probes[1],
            phases=settled[0],
            unsettled=settled[1],
            misplaced=settled[2],
            cleanup_left=left,
        )
        summary = fuzz_report.result(self.args.seed, self.outcomes, findings, self.namespace)
        fuzz_report.print_summary(sys.stdout, self.outcomes, findings, summary)
        print(json.dumps(summary), flush=True)
        return 1 if fuzz_report.failed(summary) else 0


class Logs:
    """The operator's log and the fuzz's simulated agents' logs, from where they ended when the
    run began."""

    def __init__(self, operator_log: pathlib.Path, logs_dir: pathlib.Path) -> None:
        self.operator_log = operator_log
        self.logs_dir = logs_dir
        self.operator_offset = log_scan.size_of(operator_log)
        self.agent_offsets = {path: log_scan.size_of(path) for path in self._agent_logs()}

    def _agent_logs(self) -> list[pathlib.Path]:
        return sorted(self.logs_dir.glob(f"sim-{SIM_PREFIX}-*.log"))

    def scan(self) -> tuple[log_scan.LogScan, log_scan.LogScan]:
        """What the operator's and the agents' logs got since (agents that started since: all
        of their logs)."""
        agents = log_scan.LogScan()
        for path in self._agent_logs():
            agents.add(log_scan.scan_file(path, self.agent_offsets.get(path, 0)))
        return log_scan.scan_file(self.operator_log, self.operator_offset), agents


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tag = args.tag or uuid.uuid4().hex[:6]
    cases = mutations.generate(args.seed, args.count, tag)
    probes = run_probes()
    if args.dry_run:
        if args.list:
            for case in cases:
                print(fuzz_report.case_line(case))
        fuzz_report.print_dry_run(sys.stdout, args.seed, cases, probes)
        return 0
    bench = bench_library()
    from kubernetes.client.exceptions import ApiException

    try:
        return Fuzz(args, bench, cases, tag).run(probes)
    except (FuzzError, bench.BenchError, ApiException) as exc:
        print(f"manifest_fuzz: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
