"""Ends the create actions of instances launched at their first try, a batch at a time, on a
thread of its own (:mod:`kubenova.db.create_actions`): a burst of creates then pays two
statements per batch for its action history instead of two per instance, and the launch
report's transaction stays what it was before creates had an end.

The database's view of those actions lags their launch by up to ``interval_s``; nothing waits
on it (``kubectl nova events`` shows a first-try create from the Instance's status). A batch
that failed is tried again with the next one; at start-up, one pass ends whatever a stopped
operator left unfinished.
"""

from __future__ import annotations

import logging

from kubenova.conductor import background
from kubenova.db import create_actions
from kubenova.db import engine as db_engine

LOG = logging.getLogger(__name__)


class CreateFinisher:
    """Collects launched instances and ends their create actions in batches."""

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        *,
        interval_s: float = 0.5,
        max_batch: int = 500,
    ) -> None:
        self._session_factory = session_factory
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._pending: list[str] = []
        self._worker = background.Worker("create-actions", self._run)

    def add(self, instance_uuid: str) -> None:
        """End the create action of ``instance_uuid``, launched, with the next batch."""
        with self._worker.condition:
            self._pending.append(instance_uuid)
            if len(self._pending) >= self._max_batch:
                self._worker.condition.notify()

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End what is collected, then stop."""
        self._worker.stop(timeout_s)

    def flush(self) -> int:
        """End the collected batch now, on the calling thread; how many actions ended."""
        with self._worker.condition:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            with db_engine.transaction(self._session_factory) as session:
                return create_actions.create_actions_finish(session, batch)
        except Exception:
            LOG.exception("could not end %d create actions; trying again", len(batch))
            with self._worker.condition:
                self._pending[:0] = batch
            return 0

    def finish_left_over(self) -> int:
        """End every create action of a launched instance left unfinished (by an operator
        that stopped before its last batch)."""
        with db_engine.transaction(self._session_factory) as session:
            return create_actions.create_actions_finish(session, None)

    def _run(self) -> None:
        try:
            self.finish_left_over()
        except Exception:
            LOG.exception("could not end the create actions left unfinished")
        while True:
            with self._worker.condition:
                if not self._worker.stopping:
                    self._worker.condition.wait(self._interval_s)
                stopping = self._worker.stopping
            self.flush()
            if stopping:
                return
