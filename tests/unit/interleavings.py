"""Every order in which two or three actors' calls to shared fakes can run.

The fakes of ``tests.unit.agent_credentials.fakes`` record each call in their ``calls`` list
before they act on it. :class:`Turns` is such a list whose ``append`` makes the calling actor
wait for its turn, so each actor runs in a thread of its own but only one call runs at a time,
in an order the test chooses. :func:`every_interleaving` runs the actors once per distinct
order (a depth-first search over whose turn it is at each call), so a race that needs its
calls in one particular order is found every time, not now and then.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

World = TypeVar("World")

# An actor that neither calls a fake nor ends within this long is blocked elsewhere (a lock).
_STUCK_S = 10.0
# More orders than this means the actors make more calls than a test of a race should.
_MAX_RUNS = 5000


@dataclasses.dataclass
class Run:
    """One run: who made each call, in order, and what each actor returned or raised."""

    order: list[str]
    results: dict[str, object]
    # (choice, choices) at each call: which of the actors waiting for a turn got it.
    trace: list[tuple[int, int]]

    def __str__(self) -> str:
        return " ".join(self.order)


class Turns(list[str]):
    """A ``calls`` list for the fakes: an actor's ``append`` waits for its turn."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._actors: set[str] = set()  # the actors of the run under way, by thread name
        self._live: set[str] = set()  # those that have not returned
        self._waiting: set[str] = set()  # those stopped at a call
        self._turn: str | None = None
        self.order: list[str] = []

    def append(self, call: str) -> None:
        name = threading.current_thread().name
        if name in self._actors:  # the test's own calls, before or after, go straight in
            with self._cond:
                self._waiting.add(name)
                self._cond.notify_all()
                while self._turn != name:
                    self._cond.wait()
                self._turn = None
                self._waiting.discard(name)
                self.order.append(name)
        super().append(call)

    def run(self, actors: Mapping[str, Callable[[], object]], choices: list[int]) -> Run:
        """Run ``actors`` to their end, giving the turn at the n-th call to the
        ``choices[n]``-th of the actors waiting (sorted by name), to the first beyond."""
        results: dict[str, object] = {}
        trace: list[tuple[int, int]] = []

        def body(name: str, actor: Callable[[], object]) -> None:
            try:
                results[name] = actor()
            except Exception as exc:
                results[name] = exc
            finally:
                with self._cond:
                    self._live.discard(name)
                    self._cond.notify_all()

        self._actors = set(actors)
        self._live = set(actors)
        threads = [
            threading.Thread(target=body, args=(name, actor), name=name, daemon=True)
            for name, actor in actors.items()
        ]
        for thread in threads:
            thread.start()
        with self._cond:
            while True:
                settled = self._cond.wait_for(
                    lambda: self._turn is None and self._live <= self._waiting, _STUCK_S
                )
                if not settled:
                    raise AssertionError(f"an actor is stuck outside the fakes: {self._live}")
                if not self._live:
                    break
                waiting = sorted(self._waiting)
                choice = choices[len(trace)] if len(trace) < len(choices) else 0
                trace.append((choice, len(waiting)))
                self._turn = waiting[choice]
                self._cond.notify_all()
        for thread in threads:
            thread.join()
        self._actors = set()
        return Run(self.order, results, trace)


def every_interleaving(
    world: Callable[[Turns], World],
    actors: Callable[[World], Mapping[str, Callable[[], object]]],
) -> Iterator[tuple[World, Run]]:
    """For each order of the actors' calls: a fresh ``world`` (fakes made with the given
    ``calls`` list), the ``actors`` run on it, and the run."""
    pending: list[list[int]] = [[]]
    runs = 0
    while pending:
        prefix = pending.pop()
        turns = Turns()
        made = world(turns)
        run = turns.run(actors(made), prefix)
        # Beyond the prefix every turn went to the first waiting actor: each other actor
        # that was waiting there is an order still to run.
        chosen = [choice for choice, _ in run.trace]
        for depth in range(len(prefix), len(run.trace)):
            pending.extend([*chosen[:depth], other] for other in range(1, run.trace[depth][1]))
        runs += 1
        if runs > _MAX_RUNS:
            raise AssertionError(f"more than {_MAX_RUNS} orders")
        yield made, run
