"""The conductor's periodic tasks: one thread, tasks in turn, each turn counted from the end of
the previous run, failures logged and retried.

Times are read from a clock the tests control: the real monotonic clock plus an offset a task
may bump to stand for a slow run without sleeping. The loop only runs a task once that clock
says it is due, so every bound asserted here is a lower bound the loop itself guarantees; the
intervals are a few hundredths of a second, so each test takes a fraction of a second.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

import pytest

from kubenova.conductor.periodic import PeriodicTask, PeriodicTasks

# How long a test waits for something the loop should do within a few intervals.
PATIENCE_S = 5.0


class OffsetClock:
    """``time.monotonic()`` plus an offset that ``skip`` moves forward (a simulated slow run)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self.offset

    def skip(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


class Runs:
    """Records every run of every task: name, clock at start and end, thread."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.records: list[tuple[str, float, float, threading.Thread]] = []
        self.changed = threading.Condition()

    def task(
        self,
        name: str,
        *,
        body: Callable[[], object] | None = None,
    ) -> Callable[[], None]:
        def run() -> None:
            started = self.clock()
            try:
                if body is not None:
                    body()
            finally:
                with self.changed:
                    self.records.append((name, started, self.clock(), threading.current_thread()))
                    self.changed.notify_all()

        return run

    def names(self) -> list[str]:
        with self.changed:
            return [name for name, _, _, _ in self.records]

    def of(self, name: str) -> list[tuple[float, float]]:
        with self.changed:
            return [(start, end) for n, start, end, _ in self.records if n == name]

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout=PATIENCE_S), self.records


def _run_in_thread(tasks: PeriodicTasks, runs: Runs, until: Callable[[], bool]) -> None:
    """Run the loop on a thread of the test's own until ``until`` holds, then stop it."""
    runner = threading.Thread(target=tasks.run, name="test-periodic-runner", daemon=True)
    runner.start()
    try:
        runs.wait_for(until)
    finally:
        tasks.stop()
        runner.join(PATIENCE_S)
    assert not runner.is_alive(), "the loop did not end after stop()"


@pytest.mark.parametrize("interval_s", [0.0, -1.0])
def test_a_non_positive_interval_is_refused(interval_s: float) -> None:
    ok = PeriodicTask("fine", 1.0, lambda: None)
    bad = PeriodicTask("busy", interval_s, lambda: None)
    with pytest.raises(ValueError, match="busy"):
        PeriodicTasks([ok, bad])


def test_tasks_due_together_run_in_their_order_on_one_thread() -> None:
    clock = OffsetClock()
    runs = Runs(clock)
    tasks = PeriodicTasks(
        [
            PeriodicTask("first", 0.02, runs.task("first")),
            PeriodicTask("second", 0.03, runs.task("second")),
        ],
        clock=clock,
    )

    _run_in_thread(tasks, runs, lambda: len(runs.of("first")) >= 3 and len(runs.of("second")) >= 3)

    assert runs.names()[:2] == ["first", "second"]
    threads = {thread for _, _, _, thread in runs.records}
    assert [thread.name for thread in threads] == ["test-periodic-runner"]
    # In turn: no run starts before the one before it ended.
    ordered = sorted(runs.records, key=lambda record: record[1])
    for (_, _, end, _), (_, start, _, _) in itertools.pairwise(ordered):
        assert start >= end


def test_the_first_run_waits_for_the_initial_delay() -> None:
    clock = OffsetClock()
    runs = Runs(clock)
    tasks = PeriodicTasks(
        [
            PeriodicTask("eager", 0.02, runs.task("eager")),
            PeriodicTask("late", 0.02, runs.task("late"), initial_delay_s=0.2),
        ],
        clock=clock,
    )
    before = clock()

    _run_in_thread(tasks, runs, lambda: len(runs.of("late")) >= 1)

    (late_start, _), *_ = runs.of("late")
    assert late_start >= before + 0.2
    eager = runs.of("eager")
    assert eager[0][0] < late_start  # no delay: it ran at once, well before the late one
    assert len([start for start, _ in eager if start < late_start]) >= 2


def test_the_next_turn_counts_from_the_end_of_a_slow_run() -> None:
    clock = OffsetClock()
    runs = Runs(clock)
    interval = 0.05
    # Each run "takes" a second of the loop's clock, far longer than the interval.
    tasks = PeriodicTasks(
        [PeriodicTask("slow", interval, runs.task("slow", body=lambda: clock.skip(1.0)))],
        clock=clock,
    )

    _run_in_thread(tasks, runs, lambda: len(runs.of("slow")) >= 3)

    slow = runs.of("slow")
    for (_, end), (next_start, _) in itertools.pairwise(slow):
        # Counted from the start, the task would have been overdue and run back to back.
        assert next_start - end >= interval


def test_a_task_that_raises_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = OffsetClock()
    runs = Runs(clock)

    def fail() -> None:
        raise RuntimeError("database went away")

    tasks = PeriodicTasks(
        [
            PeriodicTask("flaky", 0.02, runs.task("flaky", body=fail)),
            PeriodicTask("steady", 0.02, runs.task("steady")),
        ],
        clock=clock,
    )

    with caplog.at_level(logging.ERROR, logger="kubenova.conductor.periodic"):
        _run_in_thread(
            tasks, runs, lambda: len(runs.of("flaky")) >= 3 and len(runs.of("steady")) >= 3
        )

    failures = [r for r in caplog.records if "flaky" in r.getMessage()]
    assert len(failures) >= 3
    assert all(r.levelno == logging.ERROR for r in failures)
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in failures)
    # The other task was not held up by the failing one.
    assert not [r for r in caplog.records if "steady" in r.getMessage()]


def test_a_task_that_stops_the_loop_ends_the_turn() -> None:
    clock = OffsetClock()
    runs = Runs(clock)
    tasks: PeriodicTasks

    def stop() -> None:
        tasks.stop()

    tasks = PeriodicTasks(
        [
            PeriodicTask("stopper", 0.02, runs.task("stopper", body=stop)),
            PeriodicTask("after", 0.02, runs.task("after")),
        ],
        clock=clock,
    )
    finished = threading.Event()

    def run() -> None:
        tasks.run()
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(PATIENCE_S), "run() did not return after a task called stop()"
    assert runs.names() == ["stopper"]


def test_start_runs_on_its_own_thread_and_stop_ends_it() -> None:
    clock = OffsetClock()
    runs = Runs(clock)
    tasks = PeriodicTasks([PeriodicTask("tick", 0.02, runs.task("tick"))], clock=clock)

    tasks.start()
    try:
        runs.wait_for(lambda: len(runs.of("tick")) >= 2)
    finally:
        tasks.stop()

    threads = {thread for _, _, _, thread in runs.records}
    assert len(threads) == 1
    (thread,) = threads
    assert thread is not threading.current_thread()
    assert not thread.is_alive()
    count = len(runs.of("tick"))
    time.sleep(0.1)  # five intervals: a loop still running would have run again
    assert len(runs.of("tick")) == count


def test_stop_does_not_wait_for_a_task_that_is_not_due_yet() -> None:
    runs = Runs(time.monotonic)
    tasks = PeriodicTasks(
        [PeriodicTask("hourly", 3600.0, runs.task("hourly"), initial_delay_s=3600.0)]
    )
    before = set(threading.enumerate())
    tasks.start()
    (thread,) = set(threading.enumerate()) - before

    started = time.monotonic()
    tasks.stop(timeout=PATIENCE_S)

    assert not thread.is_alive()
    assert time.monotonic() - started < PATIENCE_S / 2
    assert runs.records == []
