"""The patch queue: per-instance ordered status writes, deferred projections held and replaced.

Time is a fake clock the tests advance; the writer's thread is real. The thread waits on a
Condition whose timeout is the time left until the next due projection *by the fake clock*,
in real seconds. The deferral used here is therefore a few hundredths of a (fake) second:
while the fake clock stands still the thread wakes every ``DELAY`` real seconds, finds
nothing due, and waits again, so "not written before due" holds however long a test waits,
and once a test advances the clock past due the thread notices within ``DELAY`` real
seconds without the test reaching into the writer to wake it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kubenova.conductor.patch_queue import PatchQueue
from tests.support import FakeClock

# The deferral, in fake seconds (and the writer thread's polling period, in real ones).
DELAY = 0.02
# How long a test waits for something the writer thread should do almost at once.
PATIENCE_S = 2.0
# How long a test watches for something that must not happen (several polling periods).
QUIET_S = 0.1
WRITER_THREAD = "status-writer"
# The waits before new tries of a failed write, in fake seconds, as short as the deferral.
RETRIES = (DELAY, DELAY * 2)


@dataclasses.dataclass(frozen=True)
class Proj:
    uid: str
    label: str


@dataclasses.dataclass(frozen=True)
class Write:
    uid: str
    label: str
    thread: threading.Thread


class Recorder:
    """The ``write`` callback: records each write and the thread it ran in.

    ``block[label]`` makes the write of that label wait for the event; ``fail`` holds labels
    whose write raises. Two writes of one uid at the same time are recorded as overlaps.
    """

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.overlaps: list[str] = []
        self.block: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.fail: set[str] = set()
        self._active: set[str] = set()
        self._changed = threading.Condition()

    def block_on(self, label: str) -> threading.Event:
        release = threading.Event()
        self.block[label] = release
        self.started[label] = threading.Event()
        return release

    def __call__(self, projection: Proj) -> None:
        with self._changed:
            if projection.uid in self._active:
                self.overlaps.append(projection.label)
            self._active.add(projection.uid)
        try:
            if projection.label in self.started:
                self.started[projection.label].set()
            release = self.block.get(projection.label)
            if release is not None:
                assert release.wait(PATIENCE_S), f"write of {projection.label} never released"
            if projection.label in self.fail:
                raise RuntimeError(f"apiserver refused {projection.label}")
            with self._changed:
                self.writes.append(
                    Write(projection.uid, projection.label, threading.current_thread())
                )
        finally:
            with self._changed:
                self._active.discard(projection.uid)
                self._changed.notify_all()

    def labels(self) -> list[str]:
        with self._changed:
            return [w.label for w in self.writes]

    def wait_for(self, count: int) -> list[Write]:
        """Wait until ``count`` writes have been recorded, and return them."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.writes) >= count, PATIENCE_S), (
                f"expected {count} writes within {PATIENCE_S}s, got {self.writes}"
            )
            return list(self.writes)


def eventually(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not predicate():
        assert time.monotonic() < deadline, f"not {what} within {PATIENCE_S}s"
        time.sleep(0.005)


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WRITER_THREAD]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_writer(clock: FakeClock, recorder: Recorder) -> Iterator[Callable[..., PatchQueue[Proj]]]:
    """Builds writers over ``recorder`` and ``clock``, and stops them after the test."""
    writers: list[PatchQueue[Proj]] = []

    def make(
        delay_s: float = DELAY, *, start: bool = True, retry_delays_s: tuple[float, ...] = RETRIES
    ) -> PatchQueue[Proj]:
        writer: PatchQueue[Proj] = PatchQueue(
            recorder, delay_s=delay_s, clock=clock, retry_delays_s=retry_delays_s
        )
        writers.append(writer)
        if start:
            writer.start()
        return writer

    yield make
    for block in recorder.block.values():
        block.set()
    for writer in writers:
        writer.stop(timeout_s=PATIENCE_S)
    eventually(lambda: not writer_threads(), "every writer thread stopped")


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="finite number of seconds >= 0"):
        PatchQueue(lambda projection: None, delay_s=-0.001)


def test_with_no_delay_a_deferred_projection_is_written_at_once_in_the_caller(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder
) -> None:
    writer = make_writer(0.0, start=False)
    writer.submit(Proj("a", "building"), defer=True)
    assert recorder.writes == [Write("a", "building", threading.current_thread())]
    assert writer.held() == 0
    # Nothing is held, so no thread was started for it.
    assert writer_threads() == []


def test_a_projection_with_nothing_pending_is_written_in_the_callers_thread(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder
) -> None:
    writer = make_writer()
    writer.submit(Proj("a", "running"))
    assert recorder.writes == [Write("a", "running", threading.current_thread())]
    assert writer.held() == 0


def test_a_deferred_projection_is_written_by_the_thread_once_due(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder, clock: FakeClock
) -> None:
    writer = make_writer(start=False)  # a deferred submit starts the thread itself
    writer.submit(Proj("a", "building"), defer=True)
    time.sleep(QUIET_S)
    assert recorder.writes == []
    assert writer.held() == 1

    clock.advance(DELAY * 0.6)
    time.sleep(QUIET_S)
    assert recorder.writes == [], "written before it was due"

    clock.advance(DELAY * 0.6)
    (write,) = recorder.wait_for(1)
    assert (write.uid, write.label) == ("a", "building")
    assert write.thread is not threading.current_thread()
    assert write.thread.name == WRITER_THREAD
    eventually(lambda: writer.held() == 0, "nothing held")


def test_a_newer_projection_replaces_a_held_one_and_is_written_without_waiting(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder, clock: FakeClock
) -> None:
    """Running replaces Building: one PATCH, of Running, sent now rather than when Building
    would have fallen due (the fake clock never gets there before the write)."""
    writer = make_writer()
    writer.submit(Proj("a", "building"), defer=True)
    writer.submit(Proj("a", "running"))

    (write,) = recorder.wait_for(1)
    assert (write.uid, write.label) == ("a", "running")
    # It drops the held one and is written at once, by the caller.
    assert write.thread is threading.current_thread()
    assert writer.held() == 0

    clock.advance(DELAY * 10)
    time.sleep(QUIET_S)
    assert recorder.labels() == ["running"]


def test_two_deferred_projections_of_one_instance_are_one_write_of_the_latest(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder, clock: FakeClock
) -> None:
    writer = make_writer()
    writer.submit(Proj("a", "building-1"), defer=True)
    clock.advance(DELAY * 0.6)
    writer.submit(Proj("a", "building-2"), defer=True)
    assert writer.held() == 1
    time.sleep(QUIET_S)
    assert recorder.writes == []

    # Due when the first was: the second does not push the write back.
    clock.advance(DELAY * 0.6)
    (write,) = recorder.wait_for(1)
    assert write.label == "building-2"

    clock.advance(DELAY * 10)
    time.sleep(QUIET_S)
    assert recorder.labels() == ["building-2"]


def test_deferred_projections_of_different_instances_are_each_written(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder, clock: FakeClock
) -> None:
    writer = make_writer()
    writer.submit(Proj("a", "a-building"), defer=True)
    writer.submit(Proj("b", "b-building"), defer=True)
    assert writer.held() == 2
    clock.advance(DELAY * 2)
    recorder.wait_for(2)
    assert sorted(recorder.labels()) == ["a-building", "b-building"]


def test_a_projection_submitted_while_its_instance_is_written_waits_for_that_write(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder
) -> None:
    writer = make_writer()
    release = recorder.block_on("x-1")
    first = threading.Thread(target=writer.submit, args=(Proj("x", "x-1"),))
    first.start()
    assert recorder.started["x-1"].wait(PATIENCE_S)

    # Returns at once (it does not write alongside x-1) and holds x-2 ...
    writer.submit(Proj("x", "x-2"))
    assert writer.held() == 1
    # ... while another instance is written at once, in its caller's thread.
    writer.submit(Proj("y", "y-1"))
    assert recorder.writes == [Write("y", "y-1", threading.current_thread())]
    time.sleep(QUIET_S)
    assert recorder.labels() == ["y-1"], "x-2 was written while x-1 was in flight"

    release.set()
    first.join(PATIENCE_S)
    writes = recorder.wait_for(3)
    assert [w.label for w in writes] == ["y-1", "x-1", "x-2"]
    assert writes[1].thread is first
    # Handed over to the thread that finished x-1: no writer thread is needed for it.
    assert writes[2].thread is first
    assert recorder.overlaps == []
    eventually(lambda: writer.held() == 0, "nothing held")


def test_only_the_last_projection_submitted_during_a_write_follows_it(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder, clock: FakeClock
) -> None:
    """The write in flight is the writer thread's own (a deferred projection fell due)."""
    writer = make_writer()
    release = recorder.block_on("x-1")
    writer.submit(Proj("x", "x-1"), defer=True)
    clock.advance(DELAY * 2)
    assert recorder.started["x-1"].wait(PATIENCE_S)

    writer.submit(Proj("x", "x-2"))
    writer.submit(Proj("x", "x-3"), defer=True)
    writer.submit(Proj("x", "x-4"))
    assert writer.held() == 1
    # The writer thread is busy with x-1; a projection of another instance with nothing
    # pending does not wait for it.
    writer.submit(Proj("y", "y-1"))
    assert recorder.labels() == ["y-1"]
    time.sleep(QUIET_S)
    assert recorder.labels() == ["y-1"]

    release.set()
    recorder.wait_for(3)
    time.sleep(QUIET_S)
    assert recorder.labels() == ["y-1", "x-1", "x-4"]
    assert recorder.overlaps == []
    assert writer.held() == 0


def test_a_failed_write_in_the_thread_is_tried_again_and_the_thread_goes_on(
    make_writer: Callable[..., PatchQueue[Proj]],
    recorder: Recorder,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kubenova.conductor.patch_queue")
    writer = make_writer()
    recorder.fail.add("a-building")
    writer.submit(Proj("a", "a-building"), defer=True)
    writer.submit(Proj("b", "b-building"), defer=True)
    clock.advance(DELAY * 2)
    eventually(
        lambda: any("instance a failed" in r.getMessage() for r in caplog.records),
        "the failure logged",
    )
    assert recorder.wait_for(1)[0].label == "b-building"  # the other instance is written
    assert writer.held() == 1  # "a" waits for its next try

    recorder.fail.clear()  # the apiserver is back
    clock.advance(RETRIES[0])
    recorder.wait_for(2)
    assert recorder.labels() == ["b-building", "a-building"]
    assert all(w.thread.name == WRITER_THREAD for w in recorder.writes)
    assert writer.held() == 0


def test_a_failed_write_in_the_callers_thread_is_not_raised_there_but_tried_again(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder, clock: FakeClock
) -> None:
    # No thread runs (no deferral): the failure starts it.
    writer = make_writer(0.0, start=False)
    recorder.fail.add("a-1")
    writer.submit(Proj("a", "a-1"))  # does not raise
    assert writer.held() == 1
    assert recorder.writes == []

    recorder.fail.clear()
    clock.advance(RETRIES[0])
    (write,) = recorder.wait_for(1)
    assert (write.label, write.thread.name) == ("a-1", WRITER_THREAD)
    assert writer.held() == 0


def test_a_newer_projection_replaces_a_failed_one_waiting_for_its_next_try(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder, clock: FakeClock
) -> None:
    writer = make_writer()
    recorder.fail.add("a-1")
    writer.submit(Proj("a", "a-1"))
    assert writer.held() == 1

    writer.submit(Proj("a", "a-2"))  # nothing of "a" in flight: written at once
    assert recorder.labels() == ["a-2"]
    recorder.fail.clear()
    clock.advance(sum(RETRIES) * 2)
    time.sleep(QUIET_S)
    assert recorder.labels() == ["a-2"]  # the older one is never written after it
    assert writer.held() == 0


def test_a_write_that_keeps_failing_is_given_up_after_its_tries(
    make_writer: Callable[..., PatchQueue[Proj]],
    recorder: Recorder,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="kubenova.conductor.patch_queue")
    writer = make_writer()
    recorder.fail.add("a-1")
    writer.submit(Proj("a", "a-1"))
    for delay in RETRIES:
        clock.advance(delay)
        time.sleep(QUIET_S)
    eventually(
        lambda: any("failed (try 3); given up" in r.getMessage() for r in caplog.records),
        "given up",
    )
    assert writer.held() == 0
    assert recorder.writes == []


def test_stop_writes_what_is_held_and_later_submits_are_written_at_once(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder
) -> None:
    writer = make_writer()
    writer.submit(Proj("a", "a-building"), defer=True)
    writer.submit(Proj("b", "b-building"), defer=True)
    time.sleep(QUIET_S)
    assert recorder.writes == []

    writer.stop(timeout_s=PATIENCE_S)  # the fake clock never reached their due time
    assert sorted(recorder.labels()) == ["a-building", "b-building"]
    assert writer.held() == 0
    assert writer_threads() == []

    writer.submit(Proj("c", "c-building"), defer=True)
    assert recorder.writes[-1] == Write("c", "c-building", threading.current_thread())
    assert writer.held() == 0
    assert writer_threads() == []


def test_without_a_started_thread_a_projection_held_behind_a_write_is_still_written(
    make_writer: Callable[..., PatchQueue[Proj]], recorder: Recorder
) -> None:
    writer = make_writer(0.0, start=False)
    release = recorder.block_on("x-1")
    first = threading.Thread(target=writer.submit, args=(Proj("x", "x-1"),))
    first.start()
    assert recorder.started["x-1"].wait(PATIENCE_S)
    writer.submit(Proj("x", "x-2"))
    release.set()
    first.join(PATIENCE_S)
    time.sleep(QUIET_S * 3)
    assert recorder.labels() == ["x-1", "x-2"]
