"""The fuzz's counts and its report: a summary for people, then one JSON line."""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from fuzz_run import Outcome
from log_scan import LogScan
from manifests import KINDS
from mutation_tables import REFERENCE, families_of
from mutations import Case

#: How many cases of each kind of finding the report lists.
LISTED = 20


def counts_by_family(cases: Sequence[Case]) -> dict[str, dict[str, int]]:
    """Kind -> family -> how many manifests: what a run will send."""
    counts: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        of_kind = collections.Counter(case.family for case in cases if case.kind is kind)
        counts[kind.name] = {family: of_kind[family] for family in families_of(kind)}
    return counts


def tally(outcomes: Iterable[Outcome], key: str) -> dict[str, dict[str, int]]:
    """Per kind (``key`` "kind") or family ("family"): sent, refused, refused_without_field,
    accepted, errors."""
    found: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        group = outcome.case.kind.name if key == "kind" else outcome.case.family
        row = found.setdefault(
            group,
            {"sent": 0, "refused": 0, "refused_without_field": 0, "accepted": 0, "errors": 0},
        )
        row["sent"] += 1
        if outcome.result == "refused":
            row["refused"] += 1
            row["refused_without_field"] += 0 if outcome.names_field else 1
        elif outcome.result == "accepted":
            row["accepted"] += 1
        else:
            row["errors"] += 1
    return found


def case_line(case: Case) -> str:
    return f"{case.kind.name} #{case.index} {case.family}: {case.change}"


@dataclasses.dataclass
class Findings:
    """What a run found besides the answers to its manifests."""

    operator: LogScan
    agents: LogScan
    #: Accepted Instances checked in process, and the problems found (one line each).
    content_checked: int
    content_problems: list[str]
    #: Accepted Instances an agent would never build (user data over 64 KiB).
    content_not_buildable: int
    probes_checked: int
    probe_problems: list[str]
    #: How the accepted Instances settled (phase or Pending:<reason>), and the hosts they
    #: landed on that are not the fuzz's.
    phases: dict[str, int]
    unsettled: list[str]
    misplaced: list[str]
    cleanup_left: list[str]


def result(
    seed: int, outcomes: Sequence[Outcome], findings: Findings, namespace: str
) -> dict[str, Any]:
    """The JSON line's object."""
    by_kind = tally(outcomes, "kind")
    without_field = [o for o in outcomes if o.result == "refused" and not o.names_field]
    return {
        "manifests": len(outcomes),
        **{kind.name: by_kind.get(kind.name, {}) for kind in KINDS},
        "operator_exceptions": findings.operator.exceptions,
        "agent_exceptions": findings.agents.exceptions,
        "content_changed": len(findings.content_problems),
        "seed": seed,
        "namespace": namespace,
        "families": tally(outcomes, "family"),
        "errors": sum(1 for o in outcomes if o.result == "error"),
        "operator_error_lines": findings.operator.errors,
        "content_checked": findings.content_checked,
        "content_not_buildable": findings.content_not_buildable,
        "builder_probes": {
            "checked": findings.probes_checked,
            "changed": len(findings.probe_problems),
        },
        "instance_phases": findings.phases,
        "unsettled": len(findings.unsettled),
        "misplaced": len(findings.misplaced),
        "cleanup_left": len(findings.cleanup_left),
        "refused_without_field_cases": [_refusal(o) for o in without_field[:LISTED]],
    }


def _refusal(outcome: Outcome) -> dict[str, Any]:
    return {
        "case": case_line(outcome.case),
        "field": outcome.case.field,
        "status": outcome.http_status,
        "message": outcome.text[:300],
    }


def failed(summary: dict[str, Any]) -> bool:
    """Whether the run breaks the promise: every manifest refused with the field named, or
    accepted and handled (settled, on the fuzz's hosts, with no exception logged), and no
    content changed."""
    refused_without_field = sum(
        summary[kind.name].get("refused_without_field", 0) for kind in KINDS
    )
    return any(
        (
            refused_without_field,
            summary["operator_exceptions"],
            summary["agent_exceptions"],
            summary["content_changed"],
            summary["errors"],
            summary["unsettled"],
            summary["misplaced"],
        )
    )


def print_summary(
    out: TextIO, outcomes: Sequence[Outcome], findings: Findings, summary: dict[str, Any]
) -> None:
    """The summary for people (the JSON line is printed after it)."""
    row = "{:<34} {:>6} {:>8} {:>14} {:>9} {:>7}"
    print(row.format("", "sent", "refused", "without field", "accepted", "errors"), file=out)
    for label, counts in [(k.name, summary[k.name]) for k in KINDS] + sorted(
        summary["families"].items()
    ):
        print(row.format(label, *(counts.get(key, 0) for key in _COLUMNS)), file=out)
    _listing(out, "refused without naming the field", [
        f"{case_line(o.case)} (field {o.case.field}; HTTP {o.http_status}): {o.text[:200]!r}"
        for o in outcomes if o.result == "refused" and not o.names_field
    ])  # fmt: skip
    _listing(out, "accepted by the apiserver (kind, family, field: how many)", grouped([
        o for o in outcomes if o.result == "accepted" and o.case.family != REFERENCE
    ]))  # fmt: skip
    _listing(out, "errors (no 4xx answer)", [
        f"{case_line(o.case)}: HTTP {o.http_status} {o.text[:200]!r}"
        for o in outcomes if o.result == "error"
    ])  # fmt: skip
    print(f"accepted Instances settled as: {findings.phases}", file=out)
    _listing(out, "accepted Instances that did not settle", findings.unsettled)
    _listing(out, "accepted Instances on hosts not the fuzz's", findings.misplaced)
    print(
        f"operator log: {findings.operator.lines} lines, {findings.operator.exceptions} "
        f"exceptions, {findings.operator.errors} ERROR lines without one",
        file=out,
    )
    _listing(out, "operator exceptions", findings.operator.samples)
    print(
        f"simulated agents' logs: {findings.agents.lines} lines, "
        f"{findings.agents.exceptions} exceptions",
        file=out,
    )
    _listing(out, "agent exceptions", findings.agents.samples)
    print(
        f"content: {findings.content_checked} accepted Instances built in process, "
        f"{len(findings.content_problems)} problems; {findings.content_not_buildable} no agent "
        f"is handed (user data over 64 KiB, or a value of a type the CRD forbids)",
        file=out,
    )
    _listing(out, "content changed", findings.content_problems)
    print(
        f"builder probes (every hostile value as name, hostname, image name, user data, key): "
        f"{findings.probes_checked}, {len(findings.probe_problems)} problems",
        file=out,
    )
    _listing(out, "builder probe problems", findings.probe_problems)
    _listing(out, "left behind by the cleanup", findings.cleanup_left)


_COLUMNS = ("sent", "refused", "refused_without_field", "accepted", "errors")


def grouped(outcomes: Iterable[Outcome]) -> list[str]:
    """``outcomes`` counted by kind, family and field, most first."""
    counts = collections.Counter((o.case.kind.name, o.case.family, o.case.field) for o in outcomes)
    return [f"{kind} {family} {field}: {n}" for (kind, family, field), n in counts.most_common()]


def _listing(out: TextIO, title: str, lines: Sequence[str]) -> None:
    if not lines:
        return
    print(f"{title} ({len(lines)}):", file=out)
    for line in lines[:LISTED]:
        print(f"  {line}", file=out)
    if len(lines) > LISTED:
        print(f"  ... and {len(lines) - LISTED} more", file=out)


def print_dry_run(
    out: TextIO, seed: int, cases: Sequence[Case], probes: tuple[int, list[str]]
) -> None:
    """What a run would send, per kind and family, and the builder probes' result; then the
    JSON line."""
    counts = counts_by_family(cases)
    families = list(families_of(KINDS[-1]))
    print(("{:<18}" + " {:>8}" * len(KINDS)).format("", *(k.name for k in KINDS)), file=out)
    for family in families:
        cells = [counts[k.name].get(family, 0) if family in counts[k.name] else "-" for k in KINDS]
        print(("{:<18}" + " {:>8}" * len(KINDS)).format(family, *cells), file=out)
    checked, problems = probes
    print(f"builder probes: {checked}, {len(problems)} problems", file=out)
    _listing(out, "builder probe problems", problems)
    print(
        json.dumps(
            {
                "dry_run": True,
                "manifests": len(cases),
                "seed": seed,
                "kinds": counts,
                "builder_probes": {"checked": checked, "changed": len(problems)},
            }
        ),
        file=out,
    )
