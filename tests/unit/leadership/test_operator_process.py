"""What a replica of ``kubenova-operator --leader-elect`` runs (``kubenova.cmd.operator``):
every replica serves the agent credentials exchange, a standby too, and is ready only once it
listens; only the replica running kopf runs the janitor; a leader stops it all after handing
its Lease back. The exchange is made of the agent-credentials fakes, the Lease is a fake."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest

from kubenova.agent_credentials import server
from kubenova.agent_credentials.service import AgentCredentials
from kubenova.agent_credentials.settings import ExchangeSettings
from kubenova.api import handlers
from kubenova.cmd import operator
from kubenova.leadership.campaign import Campaign
from kubenova.leadership.election import Clock, LeaderElector, SystemClock
from kubenova.leadership.health import STANDBY, Health
from kubenova.leadership.settings import LeaderElectionSettings
from tests.support import FakeClock
from tests.unit.agent_credentials.fakes import (
    NODE_SELECTOR,
    FakeAdmin,
    FakeNodes,
    FakeObjects,
    FakeReviewer,
    agent_review,
)
from tests.unit.leadership.fakes import FakeLeases

SETTINGS = LeaderElectionSettings(identity="me")  # 15 s, renew deadline 10 s, retry 2 s
# For a leader that keeps its Lease on the real clock while the test runs.
QUICK = LeaderElectionSettings(
    identity="me", lease_duration_s=1, renew_deadline_s=0.8, retry_period_s=0.02
)


@dataclasses.dataclass
class Exchange:
    credentials: AgentCredentials
    store: FakeObjects
    watched: FakeNodes  # the janitor's Nodes: it lists them as it starts
    directory: pathlib.Path

    def ask(self, token: str = "token-of-node-a") -> tuple[int, dict[str, str]]:
        """What an agent gets from this replica, trusting the CA the replica published."""
        ca_file = self.directory / "ca.crt"
        ca_file.write_bytes(self.store.items[("ConfigMap", "kubenova-ca")].data["ca.crt"])
        url = f"https://localhost:{self.credentials.port}{server.PATH}"
        request = urllib.request.Request(url, method="POST")
        request.add_header("Authorization", f"Bearer {token}")
        context = ssl.create_default_context(cafile=str(ca_file))
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())


@pytest.fixture
def exchange(tmp_path: pathlib.Path) -> Iterator[Exchange]:
    settings = ExchangeSettings(
        port=0,
        addr="127.0.0.1",
        namespace="kubenova",
        extra_dns_names=("localhost",),
        agent_namespace="kubenova",
        node_selector=NODE_SELECTOR,
        broker_url="amqp://rabbitmq:5672/kubenova",
    )
    store, watched = FakeObjects(), FakeNodes({"node-a", "node-b"})
    # A watch with nothing to report ends at once; pause so the janitor does not spin.
    watched.on_exhausted = lambda: time.sleep(0.01)
    credentials = AgentCredentials(
        settings,
        store=store,
        admin=FakeAdmin(),
        reviewer=FakeReviewer({"token-of-node-a": agent_review("node-a")}),
        nodes=FakeNodes({"node-a", "node-b"}),
        node_addresses=FakeNodes({"node-a", "node-b"}),
        watched_nodes=watched,
        backoff_s=(0.01,),
    )
    try:
        yield Exchange(credentials, store, watched, tmp_path)
    finally:
        credentials.stop()


def campaign(
    leases: FakeLeases, clock: Clock, settings: LeaderElectionSettings
) -> tuple[Campaign, Health]:
    """A replica's campaign for the Lease, and the state its probes answer from."""
    state = Health(clock, role=STANDBY, renew_deadline_s=settings.renew_deadline_s)
    elector = LeaderElector(leases, settings.identity, settings.lease_duration_s, clock)
    return Campaign(elector, settings, state, clock), state


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class KopfRuns:
    """Stands in for kopf: records that it ran, and runs ``then`` with kopf's memo."""

    def __init__(self, then: Callable[[kopf.Memo], None] = lambda memo: None) -> None:
        self.memos: list[kopf.Memo] = []
        self._then = then

    async def __call__(self, state: Health, stop: threading.Event, memo: kopf.Memo) -> None:
        self.memos.append(memo)
        self._then(memo)


def test_a_standby_serves_agent_credentials_but_runs_neither_kopf_nor_the_janitor(
    exchange: Exchange,
) -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leases.held_by("other-pod", duration_s=3600)
    standby, state = campaign(leases, clock, SETTINGS)
    stop = threading.Event()
    seen: dict[str, Any] = {}

    def while_standing_by() -> None:
        seen["listening"] = exchange.credentials.listening.wait(10)
        seen["ready"] = state.readiness()
        seen["answer"] = exchange.ask()
        seen["port"] = exchange.credentials.port
        stop.set()  # SIGTERM

    clock.at(5, while_standing_by)
    kopf_runs = KopfRuns()
    operator.serve_agent_credentials(exchange.credentials, state)
    assert operator.lead(standby, state, stop, exchange.credentials, run_kopf=kopf_runs) == 0

    assert seen["listening"]
    ready, why = seen["ready"]
    assert ready, why
    assert why.startswith("standby: lease held by other-pod")
    status, body = seen["answer"]
    assert (status, body["node"], body["user"]) == (200, "node-a", "agent-node-a")
    assert kopf_runs.memos == []
    assert exchange.watched.lists == 0  # no janitor: it would have listed the Nodes
    assert exchange.credentials.janitor is None
    assert leases.record.holder == "other-pod"
    # Stopped while waiting: the exchange stops with the process.
    assert not exchange.credentials.listening.is_set()
    assert refused(seen["port"])


def test_the_leader_runs_the_janitor_under_kopf_and_stops_the_exchange_after_the_release(
    exchange: Exchange,
) -> None:
    leases = FakeLeases(FakeClock())
    leader, state = campaign(leases, SystemClock(), QUICK)
    seen: dict[str, Any] = {}

    def kopf_starts_and_stops(memo: kopf.Memo) -> None:
        handlers.start_agent_credentials_janitor(memo=memo)
        seen["janitor listed the nodes"] = eventually(lambda: exchange.watched.lists >= 1)
        seen["answer"] = exchange.ask()[0]
        handlers.cleanup(memo=memo)
        seen["janitor after cleanup"] = exchange.credentials.janitor
        seen["listening after cleanup"] = exchange.credentials.listening.is_set()
        seen["holder under kopf"] = leases.record.holder

    kopf_runs = KopfRuns(kopf_starts_and_stops)
    lost: list[str] = []
    operator.serve_agent_credentials(exchange.credentials, state)
    assert exchange.credentials.listening.wait(10)
    port = exchange.credentials.port
    assert (
        operator.lead(
            leader,
            state,
            threading.Event(),
            exchange.credentials,
            run_kopf=kopf_runs,
            on_lost=lost.append,
        )
        == 0
    )

    assert len(kopf_runs.memos) == 1
    assert seen == {
        "janitor listed the nodes": True,
        "answer": 200,
        "janitor after cleanup": None,
        # kopf's cleanup stops the janitor only: the exchange outlives kopf.
        "listening after cleanup": True,
        "holder under kopf": "me",
    }
    assert lost == []
    assert leases.record.holder == ""  # released
    assert not exchange.credentials.listening.is_set()
    assert refused(port)


def test_without_the_exchange_kopf_gets_an_empty_memo_and_no_janitor_starts() -> None:
    leases = FakeLeases(FakeClock())
    leader, state = campaign(leases, SystemClock(), QUICK)
    kopf_runs = KopfRuns(lambda memo: handlers.start_agent_credentials_janitor(memo=memo))
    lost: list[str] = []
    stop = threading.Event()
    assert operator.lead(leader, state, stop, None, run_kopf=kopf_runs, on_lost=lost.append) == 0
    assert kopf_runs.memos == [kopf.Memo()]
    assert leases.record.holder == ""


def test_a_replica_is_not_ready_until_its_exchange_listens(exchange: Exchange) -> None:
    exchange.store.down = True  # the apiserver is away: the CA cannot be read
    state = Health(SystemClock(), role=STANDBY, renew_deadline_s=SETTINGS.renew_deadline_s)
    state.campaigned("other-pod")
    operator.serve_agent_credentials(exchange.credentials, state)
    assert eventually(lambda: "apiserver unreachable" in state.readiness()[1])
    assert state.readiness() == (
        False,
        "standby: the agent credentials exchange does not listen: apiserver unreachable",
    )
    assert state.liveness()[0]
    exchange.store.down = False  # it tries again on its own
    assert exchange.credentials.listening.wait(10)
    assert state.readiness()[0]
    assert exchange.ask()[0] == 200
