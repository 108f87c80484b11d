"""A daemon thread that drains what its owner queues, and stops once the queue is written.

The conductor's writers that work off the road of requests (:mod:`action_history`,
:mod:`create_finisher`) each own a :class:`Worker`: its ``condition`` guards their queue and
wakes their loop, and :meth:`Worker.stop` sets ``stopping`` and wakes the loop, which writes
what is left and returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Worker:
    """Runs ``loop`` on a daemon thread named ``name`` between :meth:`start` and :meth:`stop`.

    ``loop`` waits on :attr:`condition` and returns once :attr:`stopping` is set and nothing is
    left to write; whoever adds to the queue holds :attr:`condition` and notifies it.
    """

    def __init__(self, name: str, loop: Callable[[], None]) -> None:
        self.name = name
        self.condition = threading.Condition()
        #: Set by :meth:`stop`, read by the loop under :attr:`condition`.
        self.stopping = False
        self._loop = loop
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; a worker already started is left as it is."""
        with self.condition:
            if self._thread is not None:
                return
            self.stopping = False
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Have the loop finish and wait for it up to ``timeout_s``."""
        with self.condition:
            thread, self._thread = self._thread, None
            self.stopping = True
            self.condition.notify()
        if thread is not None:
            thread.join(timeout_s)
