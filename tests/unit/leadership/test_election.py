"""The election's rules, round by round, on a fake Lease and a fake clock."""

from __future__ import annotations

from kubenova.leadership.election import LeaderElector
from tests.support import EPOCH, FakeClock
from tests.unit.leadership.fakes import FakeLeases

DURATION_S = 15
TIMEOUT_S = 10.0


def elector(leases: FakeLeases, clock: FakeClock, identity: str = "a") -> LeaderElector:
    return LeaderElector(leases, identity, DURATION_S, clock)


def test_the_first_candidate_creates_the_lease_and_leads() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a = elector(leases, clock)
    assert a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert a.is_leader
    assert leases.record.holder == "a"
    assert (leases.record.acquire_time, leases.record.renew_time) == (EPOCH, EPOCH)
    assert leases.record.transitions == 0
    assert leases.record.duration_s == DURATION_S


def test_a_lease_renewed_by_its_holder_is_never_taken() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew(timeout=TIMEOUT_S)
    for _ in range(30):  # a minute of renewals every 2 s
        clock.advance(2)
        assert a.try_acquire_or_renew(timeout=TIMEOUT_S)
        assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert (b.holder, b.is_leader) == ("a", False)


def test_a_lease_left_unrenewed_for_its_duration_is_taken_with_a_transition() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("dead")
    b = elector(leases, clock, "b")
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(DURATION_S - 0.1)
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(0.1)
    assert b.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert leases.record.holder == "b"
    assert leases.record.transitions == 1
    assert leases.record.acquire_time == clock.now() == leases.record.renew_time


def test_expiry_counts_from_when_the_record_last_changed_not_from_its_renew_time() -> None:
    # The holder's renewTime comes from its clock; a candidate only trusts its own.
    clock = FakeClock()
    leases = FakeLeases(clock)
    b = elector(leases, clock, "b")
    clock.advance(100)
    leases.held_by("a")
    clock.advance(10)
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)  # first seen now
    clock.advance(10)
    leases.held_by("a")  # renewed: the wait starts again
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(DURATION_S - 1)
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(1)
    assert b.try_acquire_or_renew(timeout=TIMEOUT_S)


def test_renewing_keeps_the_acquire_time_and_transitions_and_moves_the_renew_time() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("old")
    a = elector(leases, clock)
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(DURATION_S)
    assert a.try_acquire_or_renew(timeout=TIMEOUT_S)
    acquired = leases.record.acquire_time
    clock.advance(2)
    assert a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert leases.record.acquire_time == acquired
    assert leases.record.renew_time == clock.now()
    assert leases.record.transitions == 1


def test_the_leader_renews_with_one_request() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a = elector(leases, clock)
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    leases.calls.clear()
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert leases.verbs() == ["replace"]


def test_a_leader_whose_lease_was_written_by_another_reads_it_and_stops_leading() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a = elector(leases, clock)
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    leases.held_by("b")
    assert not a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert leases.verbs()[-2:] == ["replace", "get"]
    assert (a.is_leader, a.holder) == (False, "b")


def test_a_leader_whose_lease_was_deleted_writes_it_again() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a = elector(leases, clock)
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    leases.lease = None
    assert a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert leases.record.holder == "a"


def test_a_leader_whose_lease_was_deleted_and_taken_stops_leading() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a = elector(leases, clock)
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    leases.lease = None
    b = elector(leases, clock, "b")
    assert b.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert not a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert (a.is_leader, a.holder) == (False, "b")


def test_of_two_candidates_writing_the_same_version_only_the_first_wins() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("dead")
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    b.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(DURATION_S)
    # b reads the expired Lease, then a takes it before b writes: b's write is refused (409).
    leases.after_get = lambda: a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert leases.record.holder == "a"
    assert leases.record.transitions == 1
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)


def test_of_two_candidates_creating_the_lease_only_the_first_wins() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    leases.after_get = lambda: a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert (leases.record.holder, a.is_leader, b.is_leader) == ("a", True, False)


def test_a_released_lease_is_taken_at_the_next_try_without_waiting() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert not b.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(1)
    assert a.release(timeout=TIMEOUT_S)
    assert (leases.record.holder, leases.record.duration_s) == ("", 1)
    assert not a.is_leader
    clock.advance(1)
    assert b.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert (leases.record.holder, leases.record.transitions) == ("b", 1)


def test_only_the_holder_releases() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    b.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert not b.release(timeout=TIMEOUT_S)
    assert leases.record.holder == "a"


def test_a_release_over_a_newer_write_leaves_the_lease_alone() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    a = elector(leases, clock)
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    leases.held_by("b")
    assert not a.release(timeout=TIMEOUT_S)
    assert leases.record.holder == "b"


def test_the_requests_of_one_round_share_its_timeout() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("dead")
    a = elector(leases, clock)
    a.try_acquire_or_renew(timeout=TIMEOUT_S)
    clock.advance(DURATION_S)
    leases.calls.clear()
    leases.stall_s = 3
    assert a.try_acquire_or_renew(timeout=TIMEOUT_S)
    assert [(call.verb, call.timeout) for call in leases.calls] == [
        ("get", 10.0),
        ("replace", 7.0),
    ]
