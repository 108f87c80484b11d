"""A node that stops being a hypervisor loses its agent's RabbitMQ user, including while no
replica was watching."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.agent_credentials import janitor, minter
from kubenova.k8s.nodes import NodeEvent
from tests.unit.agent_credentials.fakes import NODE_SELECTOR, FakeAdmin, FakeNodes, FakeObjects

BROKER = "amqp://rabbitmq:5672/kubenova"


@pytest.fixture
def admin() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
def mint(admin: FakeAdmin) -> minter.Minter:
    issuer = minter.Minter(FakeObjects(), admin, BROKER)
    for node in ("node-a", "node-b", "node-gone"):
        issuer.ensure(node)
    return issuer


def run_until_watches_are_used(nodes: FakeNodes, sweeper: janitor.Janitor) -> None:
    """Run the janitor in this thread until the scripted watches are used up."""
    nodes.on_exhausted = lambda: sweeper._stop.set()
    sweeper.run()


def gone_by_list(nodes: FakeNodes, node: str, number: int) -> Callable[[int], None]:
    """``node`` stops being a hypervisor just before list ``number``."""

    def on_list(n: int) -> None:
        if n == number:
            nodes.hypervisors.discard(node)

    return on_list


def test_at_start_nodes_deleted_while_nobody_watched_are_revoked(
    mint: minter.Minter, admin: FakeAdmin
) -> None:
    nodes = FakeNodes({"node-a", "node-b"})
    sweeper = janitor.Janitor(nodes, mint, NODE_SELECTOR)
    run_until_watches_are_used(nodes, sweeper)
    assert set(admin.passwords) == {"agent-node-a", "agent-node-b"}
    assert mint.minted_nodes() == {"node-a", "node-b"}
    assert nodes.watched_from == ["list-1"]


def test_a_node_that_leaves_the_hypervisors_is_revoked_and_others_are_not(
    mint: minter.Minter, admin: FakeAdmin
) -> None:
    nodes = FakeNodes({"node-a", "node-b", "node-gone"})
    nodes.watches = [
        [NodeEvent("MODIFIED", "node-a"), NodeEvent("DELETED", "node-b")],
        [NodeEvent("BOOKMARK", "")],
    ]
    sweeper = janitor.Janitor(nodes, mint, NODE_SELECTOR)
    run_until_watches_are_used(nodes, sweeper)
    assert set(admin.passwords) == {"agent-node-a", "agent-node-gone"}
    # Each watch resumes where the last one ended; only the first needed a list.
    assert nodes.watched_from == ["list-1", "list-1+2", "list-1+2+1"]
    assert nodes.lists == 1


def test_an_expired_watch_lists_and_sweeps_again(mint: minter.Minter, admin: FakeAdmin) -> None:
    nodes = FakeNodes({"node-a", "node-b", "node-gone"})
    nodes.watches = [[k8s_exceptions.ApiException(status=410, reason="Expired")]]
    # node-b is deleted while no watch runs: only the second list can tell.
    nodes.on_list = gone_by_list(nodes, "node-b", 2)
    run_until_watches_are_used(nodes, janitor.Janitor(nodes, mint, NODE_SELECTOR))
    assert nodes.lists == 2
    assert set(admin.passwords) == {"agent-node-a", "agent-node-gone"}


def test_a_failed_revocation_is_retried_by_the_next_sweep(
    mint: minter.Minter, admin: FakeAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(janitor, "BACKOFF_S", (0.0,))
    nodes = FakeNodes({"node-a", "node-b", "node-gone"})
    nodes.watches = [[NodeEvent("DELETED", "node-b")]]
    nodes.on_list = gone_by_list(nodes, "node-b", 2)
    admin.failures = 1  # the broker is away when node-b's deletion is seen
    run_until_watches_are_used(nodes, janitor.Janitor(nodes, mint, NODE_SELECTOR))
    assert nodes.lists == 2
    assert set(admin.passwords) == {"agent-node-a", "agent-node-gone"}
    assert mint.minted_nodes() == {"node-a", "node-gone"}


def test_stop_ends_the_thread(mint: minter.Minter) -> None:
    nodes = FakeNodes({"node-a"})
    watching = threading.Event()
    nodes.on_exhausted = watching.set
    sweeper = janitor.Janitor(nodes, mint, NODE_SELECTOR)
    sweeper.start()
    assert watching.wait(5)
    sweeper.stop()
    assert sweeper._thread is not None
    assert not sweeper._thread.is_alive()
