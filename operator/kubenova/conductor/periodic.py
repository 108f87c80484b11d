"""The conductor's periodic tasks, on one thread of their own.

Nova's conductor and scheduler run their periodic tasks from one loop per process; so does
this one. (kopf's per-object timers would run a task per Hypervisor: with a hundred hosts
that is a hundred timers, each with its own transaction, where one query serves them all.)
A task that raises is logged and runs again at its next turn: one bad pass must not stop
hosts from being marked down.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PeriodicTask:
    """``run`` every ``interval_s`` seconds, the first time ``initial_delay_s`` after start."""

    name: str
    interval_s: float
    run: Callable[[], object]
    initial_delay_s: float = 0.0


class PeriodicTasks:
    """Runs its tasks in turn on one daemon thread until stopped."""

    def __init__(
        self, tasks: list[PeriodicTask], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        for task in tasks:
            if task.interval_s <= 0:
                raise ValueError(f"periodic task {task.name}: interval must be positive")
        self._tasks = list(tasks)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="periodic-tasks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def run(self) -> None:
        """The loop (the thread's target; tests may call it and stop it from a task)."""
        start = self._clock()
        due = [start + task.initial_delay_s for task in self._tasks]
        while not self._stop.is_set():
            now = self._clock()
            for index, task in enumerate(self._tasks):
                if now < due[index] or self._stop.is_set():
                    continue
                try:
                    task.run()
                except Exception:
                    LOG.exception("periodic task %s failed; it runs again in %.0f s",
                                  task.name, task.interval_s)  # fmt: skip
                # The next turn counts from the end of this one, so a slow pass never
                # makes the task run back to back.
                due[index] = self._clock() + task.interval_s
            self._stop.wait(max(0.0, min(due) - self._clock()))
