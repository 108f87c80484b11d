"""What the chaos suite counts after a fault, from one observation of the apiserver, MariaDB,
the Hypervisors' audit status and (for a real host) libvirt's list of domains.

Pure: :mod:`observe` reads the stack into the dataclasses below; this module only compares
them, so that every count can be checked on made-up inputs.

The counts, for the Instances of one namespace (the fault's burst):

    lost               Instance objects without a live record (none, or a deleted one), plus
                       live records of the namespace without an Instance object
    duplicate_domains  domains of the burst's instances that a host runs although their record
                       is deleted or on another host (the audit's ``leftoverDomains``, and for
                       a real host libvirt's own list against the records)
    orphan_claims      instances holding allocations on the suite's hosts with no live record
    stuck              instances with a task state, in their record or their object's status
    missing_domains    live records on a host whose domain the host does not run (the audit's
                       ``missingDomains``, or libvirt's list for a real host)

and, to tell convergence: how many are Running, in a terminal Error (one with a fault reason)
or neither, and which hosts are down or audited with differences.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: A terminal Error: the instance says why (``status.fault.reason``).
RUNNING = "Running"
ERROR = "Error"


@dataclasses.dataclass(frozen=True)
class InstanceObject:
    """An Instance as the apiserver has it."""

    name: str
    uid: str
    phase: str | None
    task_state: str | None
    fault_reason: str | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> InstanceObject:
        metadata = obj.get("metadata") or {}
        status = obj.get("status") or {}
        fault = status.get("fault") or {}
        return cls(
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            phase=status.get("phase"),
            task_state=status.get("taskState"),
            fault_reason=fault.get("reason") or None,
        )


@dataclasses.dataclass(frozen=True)
class InstanceRecord:
    """A row of ``instances`` for the namespace, deleted ones included."""

    uuid: str
    deleted: bool
    vm_state: str
    task_state: str | None
    host: str | None


@dataclasses.dataclass(frozen=True)
class HostAudit:
    """A Hypervisor's state and its last audit (``status.audit``).

    ``exclusive``: only the suite places instances on the host (its simulated hosts), so the
    whole audit must be in sync; on a shared host (the real one) only the findings about the
    burst's instances, and the usage, are the suite's business.
    """

    host: str
    up: bool
    exclusive: bool
    audited: bool
    in_sync: bool
    missing: frozenset[str]
    unknown: frozenset[str]
    leftover: frozenset[str]
    usage_matches: bool

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], *, exclusive: bool) -> HostAudit:
        status = obj.get("status") or {}
        audit = status.get("audit")
        findings = audit or {}
        return cls(
            host=str((obj.get("metadata") or {}).get("name") or ""),
            up=status.get("state") == "up",
            exclusive=exclusive,
            audited=audit is not None,
            in_sync=bool(findings.get("inSync")),
            missing=frozenset(findings.get("missingDomains") or ()),
            unknown=frozenset(findings.get("unknownDomains") or ()),
            leftover=frozenset(findings.get("leftoverDomains") or ()),
            usage_matches=bool(findings.get("usageMatchesAllocations", True)),
        )


@dataclasses.dataclass(frozen=True)
class Claim:
    """An instance's allocations on one of the suite's hosts (one per instance and host),
    and whether a live record backs them."""

    instance_uuid: str
    host: str
    record_live: bool


@dataclasses.dataclass(frozen=True)
class Observation:
    """One look at the stack for one namespace.

    ``hosts``: the Hypervisors the burst may use, found or not (a host without an object is
    reported as not up). ``domains``: host -> the uuids of every domain libvirt defines there,
    for the real hosts whose libvirt the suite reads; the simulated hosts' domains are known
    only through their audit.
    """

    objects: Sequence[InstanceObject]
    records: Sequence[InstanceRecord]
    audits: Sequence[HostAudit]
    claims: Sequence[Claim]
    hosts: Sequence[str]
    domains: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Counts:
    """The counts of one observation (each a number of instances)."""

    instances: int
    lost: int
    duplicate_domains: int
    orphan_claims: int
    stuck: int
    missing_domains: int
    running: int
    errors: int
    not_running: int

    def failures(self) -> int:
        """The counts that must be 0: lost, duplicated, orphaned, stuck or missing."""
        return (
            self.lost
            + self.duplicate_domains
            + self.orphan_claims
            + self.stuck
            + self.missing_domains
        )


def _ours(observation: Observation) -> set[str]:
    """Every uuid the burst made: its objects' uids and its records' uuids."""
    return {o.uid for o in observation.objects if o.uid} | {r.uuid for r in observation.records}


def lost(observation: Observation) -> set[str]:
    """Objects without a live record, and live records without an object (by uuid)."""
    live = {r.uuid for r in observation.records if not r.deleted}
    objects = {o.uid for o in observation.objects if o.uid}
    return (objects - live) | (live - objects)


def duplicate_domains(observation: Observation) -> set[str]:
    """The burst's domains on a host that should not run them: the audits' leftovers, and on
    a host whose libvirt was read, domains whose record is deleted or on another host."""
    ours = _ours(observation)
    found = {uuid for audit in observation.audits for uuid in audit.leftover & ours}
    records = {r.uuid: r for r in observation.records}
    for host, uuids in observation.domains.items():
        for uuid in uuids:
            record = records.get(uuid)
            if record is not None and (record.deleted or record.host != host):
                found.add(uuid)
    return found


def missing_domains(observation: Observation) -> set[str]:
    """Live records whose host does not run their domain: the audits' findings, and on a host
    whose libvirt was read, its active records without a domain (builds still under way may
    rightly have none yet)."""
    ours = _ours(observation)
    found = {uuid for audit in observation.audits for uuid in audit.missing & ours}
    for record in observation.records:
        domains = observation.domains.get(record.host or "")
        if (
            domains is not None
            and not record.deleted
            and record.vm_state != "building"
            and record.uuid not in domains
        ):
            found.add(record.uuid)
    return found


def orphan_claims(observation: Observation) -> set[str]:
    """Instances holding allocations on the suite's hosts without a live record."""
    return {c.instance_uuid for c in observation.claims if not c.record_live}


def stuck(observation: Observation) -> set[str]:
    """Instances with a task state, in their live record or in their object's status."""
    found = {o.uid for o in observation.objects if o.task_state}
    found |= {r.uuid for r in observation.records if not r.deleted and r.task_state}
    return found


def terminal_error(obj: InstanceObject) -> bool:
    """In Error and saying why: a build that failed for good, not one left half-done."""
    return obj.phase == ERROR and bool(obj.fault_reason)


def count(observation: Observation) -> Counts:
    running = sum(1 for o in observation.objects if o.phase == RUNNING)
    errors = sum(1 for o in observation.objects if terminal_error(o))
    return Counts(
        instances=len(observation.objects),
        lost=len(lost(observation)),
        duplicate_domains=len(duplicate_domains(observation)),
        orphan_claims=len(orphan_claims(observation)),
        stuck=len(stuck(observation)),
        missing_domains=len(missing_domains(observation)),
        running=running,
        errors=errors,
        not_running=len(observation.objects) - running - errors,
    )


#: How many names an unsettled reason lists at most.
_LISTED = 5


def _some(items: Iterable[str]) -> str:
    ordered = sorted(items)
    more = f" and {len(ordered) - _LISTED} more" if len(ordered) > _LISTED else ""
    return ", ".join(ordered[:_LISTED]) + more


def unsettled(observation: Observation) -> list[str]:
    """Why the stack has not converged for this burst (empty: it has, as far as one
    observation can tell; :mod:`converge` asks for it to hold a while).

    Converged: every Instance Running or in a terminal Error, none with a task state, every
    host up, and every host's last audit without a difference (on a shared host: none about
    the burst's instances, and its usage matching its allocations).
    """
    reasons: list[str] = []
    phases = collections.Counter(
        o.phase or "no status"
        for o in observation.objects
        if o.phase != RUNNING and not terminal_error(o)
    )
    if phases:
        summary = ", ".join(f"{phase} {n}" for phase, n in sorted(phases.items()))
        reasons.append(f"{sum(phases.values())} instances neither Running nor failed ({summary})")
    in_task = stuck(observation)
    if in_task:
        reasons.append(f"{len(in_task)} instances in a task state")
    audits = {audit.host: audit for audit in observation.audits}
    down = [host for host in observation.hosts if not (host in audits and audits[host].up)]
    if down:
        reasons.append(f"hosts not up: {_some(down)}")
    ours = _ours(observation)
    differing = [
        audit.host if audit.audited else f"{audit.host} (not audited yet)"
        for audit in observation.audits
        if not _audit_clean(audit, ours)
    ]
    if differing:
        reasons.append(f"audits with differences: {_some(differing)}")
    return reasons


def _audit_clean(audit: HostAudit, ours: set[str]) -> bool:
    """The host's last audit found nothing the suite must wait for: no difference at all on
    a host of its own; on a shared host, none about the burst and its usage matching."""
    if not audit.audited:
        return False
    if audit.exclusive:
        return audit.in_sync
    return audit.usage_matches and not (audit.missing | audit.leftover) & ours
