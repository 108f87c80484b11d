"""Hands the hypervisor's lifecycle events to a worker thread of the agent's own.

The driver calls :meth:`EventWorker.put` on the hypervisor's event thread (libvirt's event loop,
which also carries the connections' keepalives), so it only queues the instance uuid; the worker
then asks the driver about the instance and reports it (``ComputeManager._sync_one``). Events
that pile up while the worker is busy are coalesced: one look per instance tells the current
state, however many changes led to it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

LOG = logging.getLogger(__name__)


class EventWorker:
    """One thread that calls ``handle(instance_uuid)`` for each instance an event named."""

    def __init__(self, handle: Callable[[str], None], name: str = "lifecycle-events") -> None:
        self._handle = handle
        self._name = name
        # None is the signal to stop.
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def put(self, instance_uuid: str) -> None:
        """Queue an instance to look at; returns at once (safe on any thread)."""
        self._queue.put(instance_uuid)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the instances already queued; waits up to ``timeout_s``."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            pending = [first]
            stopping = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                pending.append(more)
            # In the order the events came, each instance once.
            for instance_uuid in dict.fromkeys(pending):
                try:
                    self._handle(instance_uuid)
                except Exception:
                    # The next event, or the periodic sync, will try again.
                    LOG.exception("reporting instance %s after an event failed", instance_uuid)
            if stopping:
                return
