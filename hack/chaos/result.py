"""The JSON line the chaos suite prints per fault, and whether it failed.

Keys of every line that ran:

    fault               the fault's name
    guests              simulated | real
    instances           Instance objects the burst had when the wait ended
    lost, duplicate_domains, orphan_claims, stuck
                        the counts (counts.py), when the wait ended
    converged_s         seconds from the recovery to convergence; null when it timed out
    missing_domains     records whose host does not run their domain
    errors              instances in a terminal Error (with a fault reason)
    not_running         instances neither Running nor in a terminal Error
    not_created         creates that still failed after the recovery (of the burst asked)
    recovered_after_s   seconds from the injection to the recovery
    timed_out           whether the wait gave up
    left                when it timed out: what was still unsettled
    claims_left         burst instances still holding allocations after their deletion
    domains_left        domains the burst's hosts still report after its deletion
    hosts_not_freed     simulated hosts whose usage did not come back to what it was before
    burst_deleted       whether every Instance of the burst was gone in time
    error               present when the fault or its recovery failed (the suite stops)

A fault that cannot run here is one line ``{"fault": ..., "skipped": reason}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import converge

#: The counts of the issue, first in the line, in this order.
COUNT_KEYS = ("lost", "duplicate_domains", "orphan_claims", "stuck")
#: Further numbers that must be 0 for the fault to pass.
MUST_BE_ZERO = (
    *COUNT_KEYS,
    "missing_domains",
    "not_created",
    "claims_left",
    "domains_left",
    "hosts_not_freed",
)


@dataclasses.dataclass
class Cleanup:
    """What was left once the burst was deleted."""

    deleted: bool = True
    claims_left: int = 0
    domains_left: int = 0
    hosts_not_freed: int = 0


def skipped(fault: str, reason: str) -> dict[str, Any]:
    return {"fault": fault, "skipped": reason}


def line(
    fault: str,
    guests: str,
    asked: int,
    outcome: converge.Outcome | None,
    recovered_after_s: float | None,
    cleanup: Cleanup,
    error: str | None = None,
) -> dict[str, Any]:
    """The fault's JSON line; ``outcome`` None when the wait never ran (the fault failed)."""
    found = outcome.counts if outcome is not None else None
    instances = found.instances if found is not None else 0
    result: dict[str, Any] = {
        "fault": fault,
        "guests": guests,
        "instances": instances,
        **{key: getattr(found, key) if found is not None else None for key in COUNT_KEYS},
        "converged_s": outcome.converged_s if outcome is not None else None,
        "missing_domains": found.missing_domains if found is not None else None,
        "errors": found.errors if found is not None else None,
        "not_running": found.not_running if found is not None else None,
        "not_created": max(0, asked - instances) if found is not None else None,
        "recovered_after_s": (
            round(recovered_after_s, 1) if recovered_after_s is not None else None
        ),
        "timed_out": outcome is None or outcome.converged_s is None,
        "left": outcome.left if outcome is not None else [],
        "claims_left": cleanup.claims_left,
        "domains_left": cleanup.domains_left,
        "hosts_not_freed": cleanup.hosts_not_freed,
        "burst_deleted": cleanup.deleted,
    }
    if error is not None:
        result["error"] = error
    return result


def failed(result: dict[str, Any]) -> bool:
    """Whether the line fails the suite: a number of :data:`MUST_BE_ZERO` not 0 (or unknown),
    a timeout, an error, or Instances not deleted. A skipped fault does not."""
    if "skipped" in result:
        return False
    if result.get("error") or result.get("timed_out"):
        return True
    if any(result.get(key) != 0 for key in MUST_BE_ZERO):
        return True
    return result.get("burst_deleted") is not True
