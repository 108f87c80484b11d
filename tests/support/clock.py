"""A fake clock for code that takes its time from a callable, a ``time``-like object or a
:class:`kubenova.leadership.election.Clock`."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable

#: What :meth:`FakeClock.now` says at the start, unless told otherwise.
EPOCH = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


class FakeClock:
    """Time that moves only when a test calls :meth:`advance`, or the code under test
    :meth:`sleep` or :meth:`wait`; what a test scheduled with :meth:`at` runs as the clock
    passes its time, so a loop that would take a minute runs in microseconds.

    One clock in every shape the code reads time in: called, as ``time.monotonic`` (the
    ``clock=`` arguments); as the ``time`` module (``monotonic``, ``sleep``); as the
    election's ``Clock`` (``monotonic``, ``now``, ``wait``); and ``now`` for a module's
    ``utcnow``. Reads are thread-safe, for code under test that reads it from its own threads.
    """

    def __init__(self, start: float = 0.0, wall_start: datetime.datetime = EPOCH) -> None:
        """``start``: what :meth:`monotonic` says at first; ``wall_start``: :meth:`now`."""
        self._lock = threading.Lock()
        self._start = start
        self._t = start
        self._wall_start = wall_start
        self._scheduled: list[tuple[float, Callable[[], object]]] = []
        #: The seconds each :meth:`sleep` was asked for, in order.
        self.pauses: list[float] = []
        #: Called after each :meth:`sleep`, once the clock has moved.
        self.on_sleep: Callable[[], object] | None = None

    @property
    def t(self) -> float:
        """Seconds, as :meth:`monotonic` says."""
        with self._lock:
            return self._t

    def __call__(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime.datetime:
        """Wall-clock UTC: ``wall_start`` plus the seconds the clock moved."""
        with self._lock:
            return self._wall_start + datetime.timedelta(seconds=self._t - self._start)

    def at(self, t: float, action: Callable[[], object]) -> None:
        """Run ``action`` once the clock reaches ``t``."""
        with self._lock:
            self._scheduled.append((t, action))
            self._scheduled.sort(key=lambda item: item[0])

    def advance(self, seconds: float) -> None:
        """Move the clock on, running each scheduled action at its time on the way."""
        with self._lock:
            target = self._t + seconds
        while True:
            with self._lock:
                if not self._scheduled or self._scheduled[0][0] > target:
                    self._t = target
                    return
                when, action = self._scheduled.pop(0)
                self._t = max(self._t, when)
            action()

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.advance(seconds)
        if self.on_sleep is not None:
            self.on_sleep()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """``event.wait(timeout)``, except that the time passes at once."""
        if event.is_set():
            return True
        self.advance(timeout)
        return event.is_set()
