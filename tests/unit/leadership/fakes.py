"""A fake Lease API for the leadership tests, on the shared :class:`tests.support.FakeClock`
(which moves only when something waits on it, and runs what a test scheduled for the times it
passes, so a loop that would take a minute runs in microseconds).

:class:`FakeLeases` keeps one Lease as the apiserver does: a resourceVersion that changes on
every write, 409 for a write over a stale version or a create over an existing Lease, and an
update of a deleted Lease creates it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from kubenova.leadership.lease import Lease, LeaseConflict, LeaseRecord
from tests.support import FakeClock


@dataclasses.dataclass
class Call:
    verb: str
    timeout: float
    at: float


class FakeLeases:
    """The apiserver's side of one Lease. ``down`` makes every call fail as a lost
    connection would; ``stall_s`` makes every call take that long on the fake clock first."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.lease: Lease | None = None
        self._version = 0
        self.calls: list[Call] = []
        self.down = False
        self.stall_s = 0.0
        # Runs once after the next get answers: another candidate acting in between.
        self.after_get: Callable[[], object] | None = None
        # Runs at every call with its verb, before the call takes effect.
        self.on_call: Callable[[str], object] | None = None

    @property
    def record(self) -> LeaseRecord:
        assert self.lease is not None
        return self.lease.record

    def get(self, *, timeout: float) -> Lease | None:
        self._call("get", timeout)
        found = self.lease
        if self.after_get is not None:
            action, self.after_get = self.after_get, None
            action()
        return found

    def create(self, record: LeaseRecord, *, timeout: float) -> Lease:
        self._call("create", timeout)
        if self.lease is not None:
            raise LeaseConflict("exists")
        return self._store(record)

    def replace(self, record: LeaseRecord, resource_version: str, *, timeout: float) -> Lease:
        self._call("replace", timeout)
        # As the apiserver: a Lease that is gone is created by the update.
        if self.lease is not None and self.lease.resource_version != resource_version:
            raise LeaseConflict("stale")
        return self._store(record)

    def held_by(self, holder: str, *, duration_s: int = 15) -> None:
        """Another process writes the Lease in its name, as its own renewal would."""
        transitions = self.lease.record.transitions if self.lease else 0
        now = self._clock.now()
        self._store(LeaseRecord(holder, duration_s, now, now, transitions))

    def verbs(self) -> list[str]:
        return [call.verb for call in self.calls]

    def _call(self, verb: str, timeout: float) -> None:
        self.calls.append(Call(verb, timeout, self._clock.t))
        if self.on_call is not None:
            self.on_call(verb)
        if self.stall_s:
            self._clock.advance(min(self.stall_s, timeout))
        if self.down:
            raise ConnectionError("apiserver unreachable")

    def _store(self, record: LeaseRecord) -> Lease:
        self._version += 1
        self.lease = Lease(record, str(self._version))
        return self.lease
