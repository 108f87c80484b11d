"""Waiting for convergence after a fault's recovery.

Converged: one look finds nothing unsettled (:func:`counts.unsettled`) and every look for the
next ``settle`` seconds finds the same, with the same counts. The wait is that long because
the audit speaks late: it runs every ``KUBENOVA_AUDIT_INTERVAL`` (60 s), rewrites findings
that did not change only every five minutes, and reports a missing domain only when two
audits in a row agree; a state that held for two audit intervals has been audited twice.

``converged_s`` is measured from the recovery (the moment the fault's recovery step returned)
to the first look of the stretch that held. The stretch must start within ``timeout`` of the
recovery; one that starts in time may finish after it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from benchlib import log
from counts import Counts, Observation, count, unsettled


@dataclasses.dataclass
class Settler:
    """Feeds on looks (their time, what is unsettled, their counts) and says when the stack
    converged or the wait timed out. Pure: the caller looks and keeps the time."""

    recovered_at: float
    timeout: float
    settle: float
    #: When the current settled stretch began (None: the last look was unsettled).
    since: float | None = None
    counts: Counts | None = None
    reasons: list[str] = dataclasses.field(default_factory=list)

    def feed(self, now: float, reasons: list[str], found: Counts | None) -> None:
        """One look at ``now``: ``reasons`` it is unsettled (empty: settled), ``found`` its
        counts (None: the look failed, which ``reasons`` says)."""
        self.reasons = list(reasons)
        if reasons or found is None:
            self.since = None
        elif self.since is None or found != self.counts:
            self.since = now
        if found is not None:
            self.counts = found

    def converged(self, now: float) -> bool:
        return self.since is not None and now - self.since >= self.settle

    def timed_out(self, now: float) -> bool:
        """Nothing settled began within ``timeout`` of the recovery, or what began in time
        broke after it."""
        deadline = self.recovered_at + self.timeout
        if self.since is None:
            return now > deadline
        return self.since > deadline

    def converged_s(self) -> float | None:
        return None if self.since is None else round(self.since - self.recovered_at, 1)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a wait ended: the last counts (None if no look ever succeeded), the seconds to
    converge (None: timed out), when it timed out what was still unsettled, and the last
    look that succeeded."""

    counts: Counts | None
    converged_s: float | None
    left: list[str]
    observation: Observation | None = None


def wait(
    look: Callable[[], Observation],
    recovered_at: float,
    timeout: float,
    settle: float,
    *,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Look every ``interval`` seconds until converged or timed out."""
    settler = Settler(recovered_at=recovered_at, timeout=timeout, settle=settle)
    last_report = clock()
    seen: Observation | None = None
    while True:
        now = clock()
        try:
            observation = look()
        except Exception as exc:  # a service still away: not converged, look again
            settler.feed(now, [f"the look failed: {exc!r}"[:300]], None)
        else:
            seen = observation
            settler.feed(now, unsettled(observation), count(observation))
        if settler.converged(now):
            return Outcome(settler.counts, settler.converged_s(), [], seen)
        if settler.timed_out(now):
            left = settler.reasons or ["counts kept changing"]
            return Outcome(settler.counts, None, left, seen)
        if now - last_report >= 15:
            state = "settled, holding" if settler.since is not None else "; ".join(settler.reasons)
            log(f"{now - recovered_at:.0f}s after recovery: {state}")
            last_report = now
        sleep(interval)
