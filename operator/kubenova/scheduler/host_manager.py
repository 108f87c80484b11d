"""A cached view of host states (Nova's HostManager).

Reading every compute node for every request was the scheduler's largest cost under
load (profiling a 1000-instance burst put it at a third of the operator's time). The
view is reloaded at most every ``refresh_s`` and, between reloads, each successful claim
is subtracted locally, as Nova's ``consume_from_request`` does. A stale view is safe:
the claim re-checks room in the database, and a refused claim marks the view stale.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from kubenova.scheduler.host_state import HostState, RequestSpec


class HostManager:
    """Host states for the scheduler, cached for ``refresh_s`` seconds."""

    def __init__(
        self,
        loader: Callable[[], list[HostState]],
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, HostState] = {}
        self._loaded_at: float | None = None

    def host_states(self) -> list[HostState]:
        """The current view; reloaded from the database when older than refresh_s."""
        with self._lock:
            now = self._clock()
            if self._loaded_at is None or now - self._loaded_at >= self._refresh_s:
                self._states = {state.host: state for state in self._loader()}
                self._loaded_at = now
            return list(self._states.values())

    def consume(self, spec: RequestSpec, host: str) -> None:
        """Subtract a successful claim from the cached view of ``host``."""
        with self._lock:
            state = self._states.get(host)
            if state is None:
                return
            self._states[host] = dataclasses.replace(
                state,
                vcpus_used=state.vcpus_used + spec.vcpus,
                memory_mib_used=state.memory_mib_used + spec.memory_mib,
                disk_gib_used=state.disk_gib_used + spec.disk_gib,
                num_instances=state.num_instances + 1,
            )

    def mark_stale(self) -> None:
        """Reload on the next read (a claim found the view wrong)."""
        with self._lock:
            self._loaded_at = None
