"""Minting a node's RabbitMQ user: idempotent, the Secret first, revoked with its Node."""

from __future__ import annotations

import urllib.parse

import pytest

from kubenova.agent_credentials import minter, rabbitmq_admin
from kubenova.config import MessagingSettings
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeAdmin, FakeObjects, minted

BROKER = "amqp://rabbitmq.kubenova.svc:5672/kubenova?heartbeat=30"


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def store(calls: list[str]) -> FakeObjects:
    return FakeObjects(calls)


@pytest.fixture
def admin(calls: list[str]) -> FakeAdmin:
    return FakeAdmin(calls)


@pytest.fixture
def mint(store: FakeObjects, admin: FakeAdmin) -> minter.Minter:
    return minter.Minter(store, admin, BROKER)


def test_the_first_mint_keeps_the_password_in_the_node_secret_before_making_the_user(
    mint: minter.Minter, store: FakeObjects, admin: FakeAdmin, calls: list[str]
) -> None:
    credentials = mint.ensure("node-a.lab")

    secret = store.items[("Secret", "kubenova-agent-node-a.lab")]
    password = secret.data["password"].decode()
    assert len(password) == 32
    assert password.isalnum()
    assert secret.data["username"] == b"agent-node-a.lab"
    assert admin.passwords == {"agent-node-a.lab": password}
    assert calls == [
        "get Secret kubenova-agent-node-a.lab",
        "create Secret kubenova-agent-node-a.lab",
        "put_user agent-node-a.lab",
        "set_permissions kubenova agent-node-a.lab",
        # Still the password just set: no other replica revoked the node meanwhile.
        "get Secret kubenova-agent-node-a.lab",
    ]
    assert credentials.user == "agent-node-a.lab"


def test_the_url_is_the_brokers_with_the_nodes_own_user(mint: minter.Minter) -> None:
    credentials = mint.ensure("node-a")
    url = urllib.parse.urlsplit(credentials.amqp_url)
    assert (url.scheme, url.hostname, url.port, url.path, url.query) == (
        "amqp",
        "rabbitmq.kubenova.svc",
        5672,
        "/kubenova",
        "heartbeat=30",
    )
    assert url.username == "agent-node-a"
    assert "amqp_url" not in repr(credentials)


def test_a_second_mint_reuses_the_stored_password_and_sets_the_user_again(
    mint: minter.Minter, store: FakeObjects, admin: FakeAdmin
) -> None:
    first = mint.ensure("node-a")
    admin.passwords.clear()  # someone deleted the user by hand
    second = mint.ensure("node-a")
    assert second.amqp_url == first.amqp_url
    assert "agent-node-a" in admin.passwords
    assert len([key for key in store.items if key[0] == "Secret"]) == 1


def test_a_mint_racing_another_writer_uses_the_password_that_won(
    mint: minter.Minter, store: FakeObjects, admin: FakeAdmin
) -> None:
    store.before_create = lambda: minted("node-a", store, password="W" * 32)
    credentials = mint.ensure("node-a")
    assert admin.passwords["agent-node-a"] == "W" * 32
    assert urllib.parse.urlsplit(credentials.amqp_url).password == "W" * 32


def test_the_secret_says_which_node_in_a_label_and_an_annotation(
    mint: minter.Minter, store: FakeObjects
) -> None:
    mint.ensure("node-a")
    secret = store.items[("Secret", "kubenova-agent-node-a")]
    assert secret.labels == {
        "app.kubernetes.io/managed-by": "kubenova-operator",
        "app.kubernetes.io/component": "agent-credentials",
        "kubenova.io/node": "node-a",
    }
    assert secret.annotations == {"kubenova.io/node": "node-a"}


def test_a_node_name_too_long_for_a_label_is_in_the_annotation_only(
    mint: minter.Minter, store: FakeObjects
) -> None:
    node = "n" * 70 + ".example.com"
    mint.ensure(node)
    secret = store.items[("Secret", f"kubenova-agent-{node}")]
    assert "kubenova.io/node" not in secret.labels
    assert secret.annotations["kubenova.io/node"] == node
    assert mint.minted_nodes() == {node}


@pytest.mark.parametrize(
    "node", ["Node-A", "node_a", "-node", "node/a", "n" * 239], ids=str.__len__
)
def test_a_name_that_is_no_node_name_is_refused(mint: minter.Minter, node: str) -> None:
    with pytest.raises(ValueError, match="node name"):
        mint.ensure(node)


def test_revoking_deletes_the_user_before_the_secret_and_once_more_after(
    mint: minter.Minter, store: FakeObjects, admin: FakeAdmin, calls: list[str]
) -> None:
    mint.ensure("node-a")
    calls.clear()
    assert mint.revoke("node-a")
    assert calls == [
        "delete_user agent-node-a",
        "delete Secret kubenova-agent-node-a",
        "delete_user agent-node-a",
    ]
    assert admin.passwords == {}
    assert store.items == {}
    assert not mint.revoke("node-a")


def test_a_failed_revocation_leaves_the_secret_for_the_next_sweep(
    mint: minter.Minter, store: FakeObjects, admin: FakeAdmin
) -> None:
    mint.ensure("node-a")
    admin.down = True
    with pytest.raises(rabbitmq_admin.ManagementError):
        mint.revoke("node-a")
    assert mint.minted_nodes() == {"node-a"}


def test_a_sweep_revokes_the_minted_nodes_not_kept(
    mint: minter.Minter, store: FakeObjects, admin: FakeAdmin
) -> None:
    for node in ("node-a", "node-b", "node-c"):
        mint.ensure(node)
    assert mint.sweep({"node-b", "node-d"}) == ["node-a", "node-c"]
    assert set(admin.passwords) == {"agent-node-b"}
    assert mint.minted_nodes() == {"node-b"}


def test_a_sweep_leaves_secrets_it_did_not_make(mint: minter.Minter, store: FakeObjects) -> None:
    store.put("Secret", objects.StoredObject(name="kubenova-ca", data={}, labels={}))
    store.put(
        "Secret",
        objects.StoredObject(name="kubenova-agent-x", data={}, labels=dict(minter.LABELS)),
    )
    assert mint.sweep(set()) == []
    assert len(store.items) == 2


def test_the_permissions_cover_the_nodes_own_queue_as_the_local_stacks_script_does() -> None:
    permissions = rabbitmq_admin.agent_permissions("node-a.lab", MessagingSettings())
    assert permissions == rabbitmq_admin.Permissions(
        configure=r"^compute\.node-a\.lab$",
        write=r"^(kubenova|kubenova-dlx|compute\.node-a\.lab)$",
        read=r"^(kubenova|compute\.node-a\.lab)$",
        topic_exchange="kubenova",
        topic_write=r"^(conductor|reply\.compute\.node-a\.lab\..+)$",
        topic_read=r"^compute\.node-a\.lab$",
    )


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://h/kubenova", "kubenova"),
        ("amqp://h/%2F", "/"),
        ("amqp://h/", "/"),
        ("amqp://h", "/"),
        ("amqps://u:p@h:5671/a%2Fb", "a/b"),
    ],
)
def test_the_vhost_is_read_from_the_broker_url_as_pika_reads_it(url: str, vhost: str) -> None:
    assert minter.vhost_of(url) == vhost
