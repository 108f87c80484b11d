"""A cached view of host states (Nova's HostManager).

Reading every compute node for every request was the scheduler's largest cost under
load (profiling a 1000-instance burst put it at a third of the operator's time). The
view is reloaded at most every ``refresh_s`` and, between reloads, each successful claim
is subtracted locally, as Nova's ``consume_from_request`` does. A stale view is safe:
the claim re-checks room in the database, and a refused claim marks the view stale.

A reload builds a :class:`HostState` only for a host whose row changed since the last one:
with a thousand hosts, reading the view was a tenth of the operator's time in a burst, half of
it building states and decoding labels, and between two reloads most rows differ by nothing
(docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
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

    @classmethod
    def over_database(cls, session_factory: db_engine.SessionFactory) -> HostManager:
        """The view of the hosts recorded in the database."""
        return cls(DatabaseHosts(session_factory).all)

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
        """Reload on the next read (a claim found the view wrong, or the hosts changed)."""
        with self._lock:
            self._loaded_at = None


class DatabaseHosts:
    """Host states read from the database, each built again only when its row changed.

    :meth:`all` is not safe to call from two threads at once (the :class:`HostManager` calls
    it under its lock).
    """

    def __init__(self, session_factory: db_engine.SessionFactory) -> None:
        self._session_factory = session_factory
        self._known: dict[str, tuple[db_api.HostCapacity, HostState]] = {}

    def all(self) -> list[HostState]:
        """Every live compute node with its agent's heartbeat, read in one transaction."""
        with db_engine.transaction(self._session_factory) as session:
            rows = db_api.compute_node_capacities(session)
        known, states = self._known, []
        fresh: dict[str, tuple[db_api.HostCapacity, HostState]] = {}
        for row in rows:
            seen = known.get(row.host)
            state = seen[1] if seen is not None and seen[0] == row else host_state_of(row)
            fresh[row.host] = (row, state)
            states.append(state)
        self._known = fresh
        return states


def load_host_states(session_factory: db_engine.SessionFactory) -> list[HostState]:
    """Every live compute node with its agent's heartbeat, read in one transaction (once, with
    nothing remembered for the next read)."""
    return DatabaseHosts(session_factory).all()


def host_state_of(row: db_api.HostCapacity) -> HostState:
    """What the scheduler knows of the compute node in ``row``."""
    return HostState(
        host=row.host,
        vcpus=row.vcpus,
        vcpus_used=row.vcpus_used,
        memory_mib=row.memory_mib,
        memory_mib_used=row.memory_mib_used,
        disk_gib=row.local_gb,
        disk_gib_used=row.local_gb_used,
        cpu_allocation_ratio=row.cpu_allocation_ratio,
        ram_allocation_ratio=row.ram_allocation_ratio,
        disk_allocation_ratio=row.disk_allocation_ratio,
        reserved_host_memory_mib=row.reserved_host_memory_mib,
        reserved_host_disk_gib=row.reserved_host_disk_gib,
        disabled=row.disabled,
        disabled_reason=row.disabled_reason,
        last_seen_up=row.last_seen_up,
        num_instances=row.running_vms,
        labels=dict(row.labels or {}),
        cpu_arch=row.cpu_arch,
        hypervisor_type=row.hypervisor_type,
        virt_type=row.virt_type,
        failed_builds=row.failed_builds or 0,
    )
