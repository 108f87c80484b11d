"""Whether this process leads: client-go's ``tryAcquireOrRenew`` on a Lease.

A candidate takes the Lease when it is free (no holder, as a leader leaves it when it stops
cleanly) or expired, renews it while it holds it, and keeps the acquire time and the count
of transitions true: ``leaseTransitions`` goes up by one each time the holder changes.

"Expired" is measured on this process's own monotonic clock, as client-go does: a Lease held
by another is expired once this candidate has seen it unchanged for its
``leaseDurationSeconds``. The ``renewTime`` written by the holder is never compared with this
host's wall clock, so clocks that disagree between nodes cannot hand the Lease to a second
leader. The cost: a candidate that starts while a dead leader's Lease is still recorded waits
one full duration before it takes it.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from typing import Protocol

from kubenova.leadership.lease import Lease, LeaseAPI, LeaseConflict, LeaseRecord

LOG = logging.getLogger(__name__)


class Clock(Protocol):
    """Time as the election reads it, so tests can move it."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: every deadline is measured on it."""

    def now(self) -> datetime.datetime:
        """Wall-clock UTC, only for the times written into the Lease."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``event``; True if it is set."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)


class LeaderElector:
    """One candidate's view of the Lease; :meth:`try_acquire_or_renew` is one round.

    Not thread-safe: one thread campaigns, then the same or one other thread renews.
    """

    def __init__(
        self, leases: LeaseAPI, identity: str, lease_duration_s: int, clock: Clock
    ) -> None:
        self._leases = leases
        self.identity = identity
        self._duration_s = lease_duration_s
        self._clock = clock
        self._observed: Lease | None = None
        # When the observed record last changed, on the monotonic clock.
        self._observed_at = 0.0

    @property
    def holder(self) -> str:
        """Who held the Lease when this candidate last read or wrote it ("" if nobody)."""
        return self._observed.record.holder if self._observed else ""

    @property
    def is_leader(self) -> bool:
        return self._observed is not None and self._observed.record.holder == self.identity

    def try_acquire_or_renew(self, *, timeout: float) -> bool:
        """Take or renew the Lease: True while this candidate holds it.

        False when another holds an unexpired Lease, or another candidate wrote it first
        (409). Any other failure (the apiserver away, a timeout) raises. The requests of one
        round share ``timeout`` between them.
        """
        deadline = self._clock.monotonic() + timeout
        now = self._clock.now()
        if self.is_leader:
            assert self._observed is not None
            # The leader writes over what it wrote last: one request a round, not two.
            try:
                record = self._renewal(self._observed.record, now)
                return self._write(record, self._observed, self._left(deadline))
            except LeaseConflict:
                LOG.info("lease changed since it was last renewed; reading it again")
        current = self._leases.get(timeout=self._left(deadline))
        if current is None:
            record = LeaseRecord(self.identity, self._duration_s, now, now, transitions=0)
            try:
                created = self._leases.create(record, timeout=self._left(deadline))
            except LeaseConflict:
                LOG.debug("another candidate created the lease first")
                return False
            self._observe(created)
            return True
        self._observe(current)
        holder = current.record.holder
        if holder and holder != self.identity and not self._expired(current.record):
            return False
        if holder == self.identity:
            record = self._renewal(current.record, now)
        else:
            record = LeaseRecord(
                self.identity, self._duration_s, now, now, current.record.transitions + 1
            )
        try:
            return self._write(record, current, self._left(deadline))
        except LeaseConflict:
            LOG.debug("another candidate wrote the lease first")
            return False

    def release(self, *, timeout: float) -> bool:
        """Leave the Lease free, so a standby takes it at its next try instead of waiting
        for it to expire. Only for a leader whose work has stopped; False if it was not
        (or no longer) the holder."""
        if not self.is_leader:
            return False
        assert self._observed is not None
        now = self._clock.now()
        record = dataclasses.replace(
            self._observed.record, holder="", duration_s=1, acquire_time=now, renew_time=now
        )
        try:
            self._write(record, self._observed, timeout)
        except LeaseConflict:
            LOG.warning("lease changed before it could be released")
            return False
        return True

    def _left(self, deadline: float) -> float:
        return max(0.0, deadline - self._clock.monotonic())

    def _renewal(self, record: LeaseRecord, now: datetime.datetime) -> LeaseRecord:
        return dataclasses.replace(record, duration_s=self._duration_s, renew_time=now)

    def _write(self, record: LeaseRecord, base: Lease, timeout: float) -> bool:
        written = self._leases.replace(record, base.resource_version, timeout=timeout)
        self._observe(written)
        return True

    def _expired(self, record: LeaseRecord) -> bool:
        duration = record.duration_s or self._duration_s
        return self._observed_at + duration <= self._clock.monotonic()

    def _observe(self, lease: Lease) -> None:
        previous = self._observed
        self._observed = lease
        if previous is not None and previous.record == lease.record:
            return
        self._observed_at = self._clock.monotonic()
        if previous is None or previous.record.holder != lease.record.holder:
            LOG.info(
                "lease held by %s",
                lease.record.holder or "nobody",
                extra={"lease_holder": lease.record.holder, "identity": self.identity},
            )
