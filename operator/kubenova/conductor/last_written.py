"""What the operator last wrote into each object's status, so it need not read it back.

The conductor projects a record into status many times in an object's life (scheduled,
spawning, running, deleting), and a heartbeat rewrites a Hypervisor's status every few
seconds. Reading the object before each write only to keep ``lastTransitionTime``, and
writing a status identical to the one already there, cost the apiserver a GET, a PATCH and a
watch event to every watcher each time. This memory removes both: a projection starts from the
status this process last wrote, and a write that changes nothing is skipped.

It is only a memory of this process's own writes. A miss (a restart, a standby replica taking
over, an entry evicted, a status written by someone else and therefore forgotten here) means
"read the object", never "assume".
"""

from __future__ import annotations

import collections
import copy
import threading
from typing import Any

# Enough for every live instance of a large cell; an evicted entry only costs one GET.
DEFAULT_CAPACITY = 50_000


class LastWritten:
    """A bounded, thread-safe map from an object's key to the status last written to it."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._entries: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        """A copy of the status last written under ``key``, or None if it is not known."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return copy.deepcopy(entry)

    def remember(self, key: str, status: dict[str, Any]) -> None:
        """Record that ``status`` was merged into the object's status (fields not given stay)."""
        with self._lock:
            merged = self._entries.pop(key, {})
            merged.update(copy.deepcopy(status))
            self._put_locked(key, merged)

    def mark_stale(self, key: str) -> None:
        """A write to the object failed: what its status shows is not known, only that it may
        lack what was projected. An empty entry makes the next projection write in full
        (every field differs from nothing) without reading the object first."""
        with self._lock:
            self._entries.pop(key, None)
            self._put_locked(key, {})

    def forget(self, key: str) -> None:
        """The object's status is no longer known here (someone else wrote it, or it is gone)."""
        with self._lock:
            self._entries.pop(key, None)

    def _put_locked(self, key: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` as the newest, evicting the oldest beyond the capacity."""
        self._entries[key] = entry
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def changed_fields(previous: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``status`` that a merge patch onto ``previous`` would change."""
    if previous is None:
        return dict(status)
    return {key: value for key, value in status.items() if previous.get(key) != value}
