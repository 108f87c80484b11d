"""Writes Instance status projections in order, holding back the ones that rarely last.

Two projections follow each create: "Building, claimed on host h" just before the build is
cast, and "Running" when the host reports it started the domain, usually a fraction of a
second later. Writing both cost the apiserver two status PATCHes per instance, each sent
to every watcher. The api layer may therefore *defer* its Building projection for
``delay_s``: a newer projection of the same instance submitted meanwhile replaces it, so a
quick build costs one PATCH, and a slow one shows Building ``delay_s`` late.

Order is what matters: for each instance the last projection submitted is the one left in
its status. So at most one write per instance is in flight; a projection submitted while
another of the same instance is being written waits in its slot (replacing any projection
already waiting there), and the thread that finishes that write sends it next. Any other
projection that is not deferred is written at once, in the caller's thread, as before, and
drops the held projection of its instance, if any.

With ``delay_s`` 0 nothing is held and no thread is needed: every write is immediate.

A write that fails (the apiserver restarting, say) is held and tried again after
:data:`RETRY_DELAYS_S`, unless a newer projection of the instance replaces it meanwhile; the
thread starts for it if need be. The caller is not told: what the status should say is
already decided, and failing the caller (a report from a host, whose records are already
committed) would only have it project again from records that may then look unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

LOG = logging.getLogger(__name__)

#: Seconds before each new try of a failed write: about three minutes in all, then the
#: projection is given up (logged), and the instance's next projection writes it afresh.
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0, 30.0, 30.0, 30.0)


class _Keyed(Protocol):
    @property
    def uid(self) -> str: ...


P = TypeVar("P", bound=_Keyed)


@dataclasses.dataclass
class _Slot(Generic[P]):
    due: float
    projection: P
    #: Failed writes of this projection so far.
    failures: int = 0


class PatchQueue(Generic[P]):
    """Per-instance ordered status writes, with optional deferral (see the module doc).

    ``write`` patches one projection (and records the outcome); when it raises, the
    projection is tried again later (see the module doc). ``start``/``stop`` run the thread
    that writes held projections; ``stop`` writes whatever is still held, once.
    """

    def __init__(
        self,
        write: Callable[[P], None],
        *,
        delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        if not math.isfinite(delay_s) or delay_s < 0:
            raise ValueError(f"delay_s must be a finite number of seconds >= 0, not {delay_s}")
        self._write = write
        self.delay_s = delay_s
        self._retry_delays_s = retry_delays_s
        self._clock = clock
        self._cond = threading.Condition()
        self._held: dict[str, _Slot[P]] = {}
        self._in_flight: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def submit(self, projection: P, *, defer: bool = False) -> None:
        """Write ``projection`` now, or hold it ``delay_s`` when ``defer`` (see module doc)."""
        uid = projection.uid
        with self._cond:
            slot = self._held.get(uid)
            if defer and self.delay_s > 0 and not self._stopping:
                if self._thread is None:
                    self._start_locked()
                if slot is None:
                    self._held[uid] = _Slot(self._clock() + self.delay_s, projection)
                else:
                    slot.projection, slot.failures = projection, 0
                self._cond.notify_all()
                return
            if uid in self._in_flight:
                # Sent right after what is in flight, in place of anything held.
                if slot is None:
                    self._held[uid] = _Slot(self._clock(), projection)
                else:
                    slot.projection, slot.due, slot.failures = projection, self._clock(), 0
                self._cond.notify_all()
                return
            if slot is not None:
                del self._held[uid]  # replaced by this newer one, written now
            self._in_flight.add(uid)
        self._write_then_successors(uid, projection, 0)

    def held(self) -> int:
        """How many projections are waiting to be written."""
        with self._cond:
            return len(self._held)

    def start(self) -> None:
        """Start the thread that writes held projections when they fall due (a deferred
        submit starts it too)."""
        with self._cond:
            if self._thread is None:
                self._start_locked()

    def _start_locked(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write everything still held, then stop the thread."""
        with self._cond:
            self._stopping = True
            for slot in self._held.values():
                slot.due = self._clock()
            self._cond.notify_all()
        # Without a thread nothing waits for one: only a deferred submit holds a projection
        # until it falls due, and it starts the thread; a hand-over is written by the
        # thread that finishes the write before it.
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _finish(self, uid: str) -> tuple[P, int] | None:
        """A write of ``uid`` ended: hand over the projection submitted meanwhile, if any
        (``uid`` then stays in flight), so a hand-over never waits for the thread."""
        with self._cond:
            slot = self._held.get(uid)
            if slot is not None and slot.due <= self._clock():
                del self._held[uid]
                return slot.projection, slot.failures
            self._in_flight.discard(uid)
            if slot is not None:
                self._cond.notify_all()
            return None

    def _write_then_successors(self, uid: str, projection: P, failures: int) -> None:
        """Write ``projection`` of ``uid`` (in flight), then whatever was submitted meanwhile."""
        while True:
            try:
                self._write(projection)
            except Exception as exc:
                self._failed(uid, projection, failures + 1, exc)
            successor = self._finish(uid)
            if successor is None:
                return
            projection, failures = successor

    def _failed(self, uid: str, projection: P, failures: int, exc: Exception) -> None:
        """Hold a projection whose write failed for a new try, unless a newer one is held."""
        with self._cond:
            if uid in self._held:
                LOG.warning(
                    "writing the status of instance %s failed (%s); a newer one follows", uid, exc
                )
                return
            if self._stopping or failures > len(self._retry_delays_s):
                LOG.error(
                    "writing the status of instance %s failed (try %d); given up: %s",
                    uid,
                    failures,
                    exc,
                )
                return
            delay = self._retry_delays_s[failures - 1]
            self._held[uid] = _Slot(self._clock() + delay, projection, failures)
            if self._thread is None:
                self._start_locked()
            self._cond.notify_all()
        LOG.warning(
            "writing the status of instance %s failed (%s); trying again in %gs", uid, exc, delay
        )

    def _next_due(self) -> tuple[str, P, int] | None:
        """Pop a held projection that is due and whose instance has nothing in flight."""
        now = self._clock()
        for uid, slot in self._held.items():
            if slot.due <= now and uid not in self._in_flight:
                del self._held[uid]
                self._in_flight.add(uid)
                return uid, slot.projection, slot.failures
        return None

    def _wait_s(self) -> float | None:
        ready = [slot.due for uid, slot in self._held.items() if uid not in self._in_flight]
        if not ready:
            return None
        return max(0.0, min(ready) - self._clock())

    def _run(self) -> None:
        while True:
            with self._cond:
                item = self._next_due()
                while item is None:
                    if self._stopping and not self._held:
                        return
                    self._cond.wait(self._wait_s())
                    item = self._next_due()
            self._write_then_successors(*item)
