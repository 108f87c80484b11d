"""Telling an Instance's delete handler, without polling, that its record is gone.

The delete handler casts the terminate to the host, then holds kopf's finalizer until the
conductor has soft-deleted the record (the host reported the domain destroyed). Asking again
every second (a ``kopf.TemporaryError`` with a delay) cost, per retry of every instance being
deleted, a read of the record and a kopf patch of the object's progress annotation, with the
watch event that patch brings back: in a delete of 1000 instances at once, those retries were
most of the operator's work (docs/benchmarks.md, "Deletes"). So the handler waits for the
notice the conductor gives when it forgets an instance, and reads the database again only when
none came in time (another replica handled the report, or it is slow).

The conductor notices on its own threads; the handler waits on kopf's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Notice:
    """One handler's wait for one instance's notice; made by :meth:`GoneNotices.expect`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def set_threadsafe(self) -> None:
        # A loop closed meanwhile (the operator stopping) has no handler left to wake.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout_s: float) -> bool:
        """Whether the notice came within ``timeout_s`` (at once if it came already)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class GoneNotices:
    """Instance uid -> the handlers waiting for its record to be gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Notice]] = {}

    @contextlib.contextmanager
    def expect(self, uid: str) -> Iterator[Notice]:
        """A notice for ``uid``, registered before the caller looks at the record, so that a
        record forgotten between that look and the wait is not missed. Call on the loop."""
        notice = Notice(asyncio.get_running_loop())
        with self._lock:
            self._waiting.setdefault(uid, []).append(notice)
        try:
            yield notice
        finally:
            with self._lock:
                waiting = self._waiting.get(uid, [])
                if notice in waiting:
                    waiting.remove(notice)
                if not waiting:
                    self._waiting.pop(uid, None)

    def gone(self, uid: str) -> None:
        """The record of ``uid`` is gone: wake whoever waits for it (safe on any thread)."""
        with self._lock:
            waiting = self._waiting.pop(uid, [])
        for notice in waiting:
            notice.set_threadsafe()

    def waiting(self) -> int:
        """How many instances have a handler waiting (for tests and metrics)."""
        with self._lock:
            return len(self._waiting)
