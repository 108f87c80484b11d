"""The campaign in time: a standby waits, a leader renews, and a leader that cannot renew
gives up before anyone else may take the Lease."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from kubenova.leadership.campaign import Campaign
from kubenova.leadership.election import LeaderElector, SystemClock
from kubenova.leadership.health import STANDBY, Health
from kubenova.leadership.settings import LeaderElectionSettings
from tests.support import FakeClock
from tests.unit.leadership.fakes import FakeLeases

SETTINGS = LeaderElectionSettings(identity="me")  # 15 s, renew deadline 10 s, retry 2 s


class Lost:
    def __init__(self, clock: FakeClock, stop: threading.Event) -> None:
        self._clock = clock
        self._stop = stop
        self.reasons: list[str] = []
        self.at: list[float] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.at.append(self._clock.t)
        self._stop.set()  # in the process this is the end of it


def campaign(leases: FakeLeases, clock: FakeClock) -> Campaign:
    elector = LeaderElector(leases, SETTINGS.identity, SETTINGS.lease_duration_s, clock)
    health = Health(clock, role=STANDBY, renew_deadline_s=SETTINGS.renew_deadline_s)
    return Campaign(elector, SETTINGS, health, clock)


def test_a_standby_takes_the_lease_once_its_holder_stops_renewing() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("other")
    for t in range(2, 31, 2):  # the other leader renews until t=30 s, then dies
        clock.at(t, lambda: leases.held_by("other"))
    assert campaign(leases, clock).acquire(threading.Event())
    assert leases.record.holder == "me"
    # Expired 15 s after the last renewal seen; found at the next try, 2 s apart.
    assert 45 <= clock.t <= 45 + SETTINGS.retry_period_s


def test_a_standby_takes_a_released_lease_within_a_retry_period() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("other")
    clock.at(7, lambda: leases.held_by(""))
    assert campaign(leases, clock).acquire(threading.Event())
    assert 7 <= clock.t <= 7 + SETTINGS.retry_period_s


def test_a_standby_keeps_trying_while_the_apiserver_is_away() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.down = True
    clock.at(20, lambda: setattr(leases, "down", False))
    assert campaign(leases, clock).acquire(threading.Event())
    assert leases.verbs().count("get") == 11  # every 2 s, then the one that finds no Lease


def test_a_stopped_standby_stops_waiting() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("other")
    stop = threading.Event()
    clock.at(5, stop.set)
    assert not campaign(leases, clock).acquire(stop)
    assert leases.record.holder == "other"


def test_the_leader_renews_every_retry_period_until_stopped() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    stop = threading.Event()
    lost = Lost(clock, stop)
    clock.at(60, stop.set)
    kept.renew(stop, lost)
    assert lost.reasons == []
    assert leases.verbs().count("replace") == 29  # t = 2, 4, ... 58
    assert leases.record.renew_time == clock.now() - datetime.timedelta(seconds=2)


def test_a_leader_that_cannot_renew_gives_up_at_the_renew_deadline() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    clock.at(9, lambda: setattr(leases, "down", True))  # last renewal at t=8
    stop = threading.Event()
    lost = Lost(clock, stop)
    kept.renew(stop, lost)
    assert len(lost.reasons) == 1
    assert "not renewed for 10 s" in lost.reasons[0]
    assert "apiserver unreachable" in lost.reasons[0]
    assert lost.at == [pytest.approx(8 + SETTINGS.renew_deadline_s)]
    # Before anyone else may take it: 15 s after the last renewal.
    assert lost.at[0] < 8 + SETTINGS.lease_duration_s


def test_no_renewal_request_outlives_the_renew_deadline() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    leases.calls.clear()
    leases.stall_s = 60  # every request hangs until its timeout, then fails
    leases.down = True
    stop = threading.Event()
    lost = Lost(clock, stop)
    kept.renew(stop, lost)
    assert lost.at == [pytest.approx(SETTINGS.renew_deadline_s)]
    assert all(call.at + call.timeout <= SETTINGS.renew_deadline_s for call in leases.calls)


def test_a_leader_that_sees_another_holder_gives_up_at_once() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    clock.at(5, lambda: leases.held_by("usurper"))
    stop = threading.Event()
    lost = Lost(clock, stop)
    kept.renew(stop, lost)
    assert lost.reasons == ["lease kubenova-operator is held by usurper"]
    assert lost.at == [6]


def test_the_watchdog_gives_up_at_the_deadline_whatever_the_renewals_are_doing() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    clock.advance(3)
    stop = threading.Event()
    lost = Lost(clock, stop)
    kept.watch(stop, lost)  # nothing renews: as if the renewing thread hung
    assert lost.at == [SETTINGS.renew_deadline_s]


def test_leadership_is_lost_once_whoever_notices_first() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    leases.down = True
    stop = threading.Event()
    lost = Lost(clock, stop)
    kept.watch(threading.Event(), lost)
    kept.renew(threading.Event(), lost)
    assert len(lost.reasons) == 1


def test_release_frees_the_lease_for_the_standby() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    assert kept.release()
    assert leases.record.holder == ""


def test_a_release_that_fails_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    kept = campaign(leases, clock)
    kept.acquire(threading.Event())
    leases.down = True
    assert not kept.release()
    assert "could not release lease kubenova-operator" in caplog.text


def test_the_same_failure_is_logged_once_a_run_not_once_a_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.down = True
    clock.at(20, lambda: setattr(leases, "down", False))
    caplog.set_level("INFO", logger="kubenova.leadership")
    campaign(leases, clock).acquire(threading.Event())
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "apiserver unreachable" in warnings[0].getMessage()


def test_stopping_the_keepers_waits_for_a_renewal_under_way_before_the_release() -> None:
    quick = LeaderElectionSettings(
        identity="me", lease_duration_s=1, renew_deadline_s=0.8, retry_period_s=0.02
    )
    leases = FakeLeases(FakeClock())
    clock = SystemClock()
    elector = LeaderElector(leases, quick.identity, quick.lease_duration_s, clock)
    kept = Campaign(elector, quick, Health(clock, role=STANDBY), clock)
    assert kept.acquire(threading.Event())
    in_flight = threading.Event()

    def slow_renewal(verb: str) -> None:
        if verb == "replace" and threading.current_thread().name == "lease-renew":
            in_flight.set()
            time.sleep(0.2)

    leases.on_call = slow_renewal
    lost: list[str] = []
    kept.start_keeping(lost.append)
    assert in_flight.wait(5)
    assert kept.stop_keeping()
    leases.on_call = None
    assert kept.release()
    assert leases.record.holder == ""
    assert lost == []
