"""What /healthz and /readyz answer for a standby, a leader and a single operator, and how
what every replica serves (the agent credentials exchange) weighs on /readyz."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from kubenova.leadership import health
from kubenova.leadership.election import SystemClock
from kubenova.leadership.health import LEADER, SINGLE, STANDBY, Health
from tests.support import FakeClock

RENEW_DEADLINE_S = 10.0


def test_a_waiting_standby_is_live_and_ready() -> None:
    clock = FakeClock()
    state = Health(clock, role=STANDBY, renew_deadline_s=RENEW_DEADLINE_S)
    clock.advance(1)
    state.campaigned("other-pod")
    assert state.liveness() == (True, "standby: lease held by other-pod, last tried 0.0 s ago")
    assert state.readiness()[0]


def test_a_standby_whose_campaign_stalled_is_neither_live_nor_ready() -> None:
    clock = FakeClock()
    state = Health(clock, role=STANDBY, renew_deadline_s=RENEW_DEADLINE_S)
    state.campaigned("other-pod")
    clock.advance(health.DEFAULT_STALL_S + 1)
    assert state.liveness() == (False, "standby: campaign has not turned for 31.0 s")
    assert not state.readiness()[0]


def test_a_leader_is_ready_only_once_kopf_has_started() -> None:
    clock = FakeClock()
    state = Health(clock, role=STANDBY, renew_deadline_s=RENEW_DEADLINE_S)
    state.renewed(clock.t)
    state.became_leader()
    assert state.role == LEADER
    assert state.liveness()[0]
    assert state.readiness() == (False, "leader: kopf's startup handlers have not finished")
    state.started.set()
    assert state.readiness() == (
        True,
        "leader: lease renewed 0.0 s ago, event loop turned 0.0 s ago",
    )


def test_a_leader_that_has_not_renewed_within_the_deadline_is_not_live() -> None:
    clock = FakeClock()
    state = Health(clock, role=STANDBY, renew_deadline_s=RENEW_DEADLINE_S)
    state.renewed(clock.t)
    state.became_leader()
    state.started.set()
    clock.advance(RENEW_DEADLINE_S + 0.5)
    state.turned()
    assert state.liveness() == (False, "leader: lease not renewed within 10 s")
    assert not state.readiness()[0]


def test_an_operator_whose_event_loop_stopped_turning_is_not_live() -> None:
    clock = FakeClock()
    state = Health(clock, role=SINGLE)
    state.started.set()
    clock.advance(5)
    state.turned()
    assert state.readiness() == (True, "single: event loop turned 0.0 s ago")
    clock.advance(health.DEFAULT_STALL_S + 1)
    assert state.liveness() == (False, "single: event loop has not turned for 31.0 s")


def test_a_standby_is_ready_only_while_what_every_replica_serves_can_serve() -> None:
    clock = FakeClock()
    state = Health(clock, role=STANDBY, renew_deadline_s=RENEW_DEADLINE_S)
    problem: list[str | None] = ["the agent credentials exchange is not listening yet"]
    state.require(lambda: problem[0])
    state.campaigned("other-pod")
    assert state.liveness()[0]
    assert state.readiness() == (
        False,
        "standby: the agent credentials exchange is not listening yet",
    )
    problem[0] = None
    assert state.readiness() == (True, "standby: lease held by other-pod, last tried 0.0 s ago")


def test_a_leader_whose_exchange_does_not_listen_is_not_ready_though_kopf_started() -> None:
    clock = FakeClock()
    state = Health(clock, role=STANDBY, renew_deadline_s=RENEW_DEADLINE_S)
    state.require(lambda: "the agent credentials exchange does not listen: port in use")
    state.renewed(clock.t)
    state.became_leader()
    state.started.set()
    assert state.liveness()[0]  # nothing a restart of the process is known to fix
    assert state.readiness() == (
        False,
        "leader: the agent credentials exchange does not listen: port in use",
    )


@pytest.fixture
def served() -> Iterator[tuple[Health, str]]:
    state = Health(SystemClock(), role=SINGLE)
    server = health.serve(state, "127.0.0.1", 0)
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_the_probes_answer_200_when_ok_and_503_with_the_reason(
    served: tuple[Health, str],
) -> None:
    state, base = served
    assert _get(base + "/healthz") == (200, "ok: single: event loop turned 0.0 s ago\n")
    assert _get(base + "/readyz") == (503, "single: kopf's startup handlers have not finished\n")
    state.started.set()
    assert _get(base + "/readyz")[0] == 200
    assert _get(base + "/metrics")[0] == 404
