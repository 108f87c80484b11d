"""Every replica serves the exchange and the leader's janitor revokes, so minting for one node
runs in two processes at once. In every order of their calls to the apiserver and RabbitMQ:
two mints end with one password that RabbitMQ and the Secret agree on, and a mint racing a
revocation never leaves a user without its Secret (the janitor's sweep finds users by their
Secrets)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import urllib.parse
from collections.abc import Callable, Mapping

import pytest

from kubenova.agent_credentials import minter
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeAdmin, FakeObjects, minted
from tests.unit.interleavings import Run, Turns, every_interleaving

BROKER = "amqp://rabbitmq:5672/kubenova"
NODE, USER, SECRET = "node-a", "agent-node-a", "kubenova-agent-node-a"
OLD_PASSWORD = "O" * 32


@dataclasses.dataclass
class Cluster:
    """One apiserver and one RabbitMQ, and a Minter per replica on them."""

    store: FakeObjects
    admin: FakeAdmin
    replicas: dict[str, minter.Minter]

    def stored_password(self) -> str | None:
        secret = self.store.items.get(("Secret", SECRET))
        return secret.data["password"].decode() if secret is not None else None


def cluster(start: str) -> Callable[[Turns], Cluster]:
    """``start``: no Secret (``none``), a Secret emptied by hand (``emptied``), or the node
    minted earlier (``minted``: Secret and user with ``OLD_PASSWORD``)."""

    def make(calls: Turns) -> Cluster:
        store, admin = FakeObjects(calls), FakeAdmin(calls)
        if start == "minted":
            minted(NODE, store, password=OLD_PASSWORD)
            admin.passwords[USER] = OLD_PASSWORD
        elif start == "emptied":
            store.put("Secret", objects.StoredObject(name=SECRET, data={"password": b""}))
        replicas = {
            name: minter.Minter(store, admin, BROKER, password_factory=_passwords(name))
            for name in ("leader", "standby")
        }
        return Cluster(store, admin, replicas)

    return make


def _passwords(replica: str) -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{replica}{next(counter)}"


def password_of(credentials: minter.Credentials) -> str | None:
    return urllib.parse.urlsplit(credentials.amqp_url).password


def both_ensure(world: Cluster) -> Mapping[str, Callable[[], object]]:
    return {name: functools.partial(mint.ensure, NODE) for name, mint in world.replicas.items()}


def ensure_beside_revoke(world: Cluster) -> Mapping[str, Callable[[], object]]:
    return {
        "leader": functools.partial(world.replicas["leader"].revoke, NODE),
        "standby": functools.partial(world.replicas["standby"].ensure, NODE),
    }


@pytest.mark.parametrize("start", ["none", "emptied"])
def test_two_replicas_minting_one_node_at_once_agree_on_one_password(start: str) -> None:
    orders = 0
    for world, run in every_interleaving(cluster(start), both_ensure):
        orders += 1
        stored = world.stored_password()
        assert stored, run
        assert world.admin.passwords == {USER: stored}, run
        for name, result in run.results.items():
            assert isinstance(result, minter.Credentials), f"{name}: {result!r} ({run})"
            assert password_of(result) == stored, f"{name} answered another password ({run})"
    # Each ensure makes four calls or more (get, create, put_user, set_permissions): the
    # search tried at least every order of two such sequences, C(8, 4).
    assert orders >= 70


def _no_user_without_its_secret(world: Cluster, run: Run) -> None:
    stored = world.stored_password()
    if USER in world.admin.passwords:
        assert stored is not None, f"the user outlives its Secret ({run})"
        assert world.admin.passwords[USER] == stored, f"two passwords ({run})"


@pytest.mark.parametrize("start", ["minted", "none"])
def test_a_mint_racing_the_leaders_revocation_leaves_no_user_without_its_secret(
    start: str,
) -> None:
    orders = 0
    outcomes = set()
    for world, run in every_interleaving(cluster(start), ensure_beside_revoke):
        orders += 1
        _no_user_without_its_secret(world, run)
        assert not isinstance(run.results["leader"], Exception), run
        ensured = run.results["standby"]
        assert isinstance(ensured, (minter.Credentials, minter.Revoked)), f"{ensured!r} ({run})"
        if USER in world.admin.passwords:
            # A user left standing is the one the mint answered with, after the revocation.
            assert isinstance(ensured, minter.Credentials), run
            assert password_of(ensured) == world.stored_password(), run
        outcomes.add(type(ensured).__name__)
    # A revocation makes three calls, an ensure four or more: at least C(7, 3) orders.
    assert orders >= 35
    # Some orders revoke the mint under way, others mint after the revocation.
    assert outcomes == {"Credentials", "Revoked"}


def test_a_mint_that_finds_its_node_revoked_meanwhile_takes_the_user_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The order the check after setting the user is for, spelled out: the replica reads the
    # Secret, the leader revokes the node, then the replica sets the user from what it read.
    world = cluster("minted")(Turns())
    set_user = world.admin.put_user

    def revoked_just_before(name: str, password: str) -> None:
        world.replicas["leader"].revoke(NODE)
        set_user(name, password)

    monkeypatch.setattr(world.admin, "put_user", revoked_just_before)
    with pytest.raises(minter.Revoked):
        world.replicas["standby"].ensure(NODE)
    assert world.admin.passwords == {}
    assert world.stored_password() is None
