"""One node's agent identity: the RabbitMQ user ``agent-<node>`` and the Secret that keeps it.

The Secret ``kubenova-agent-<node>`` (in the operator's namespace, readable by the operator's
ServiceAccount only) holds ``username`` and ``password``; its labels say it is an agent's
credentials and, where the name fits in a label value, which node (``kubenova.io/node``); the
annotation ``kubenova.io/node`` always names it.

* :meth:`Minter.ensure` is idempotent: it reuses the stored password (an agent that already
  has it keeps working) and sets the user's password and permissions again each time, which
  also repairs a user someone changed or deleted by hand. The Secret is written before the
  user, so a RabbitMQ user minted here never exists without its Secret.
* :meth:`Minter.revoke` deletes the user, then the Secret, then the user once more.
* :meth:`Minter.sweep` revokes every node with a Secret that is not among those to keep.

Two calls about the same node never run at once in this process. Across processes they do:
every replica serves the exchange, and the leader's janitor revokes. Both keep to what the
janitor's sweep relies on, that no user outlives its Secret, and end with one password:

* Two ensures: the Secret is created (or, emptied by hand, given a password again) under the
  apiserver's guard, so only the first write wins; the other reads the winner's password, and
  each sets the user to the password the Secret holds.
* An ensure and a revoke: ensure reads the Secret again once it has set the user. Gone means
  the node was revoked meanwhile: it deletes the user it may have set back and fails (the
  agent asks again, and is refused if its node has left). Another password means the node was
  revoked and minted again: it sets that one. And revoke deletes the user again after the
  Secret, in case an ensure set it back from the Secret it read before.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import secrets
import string
import threading
import urllib.parse
from collections.abc import Callable, Collection
from typing import Protocol

from kubenova.agent_credentials import rabbitmq_admin
from kubenova.config import MessagingSettings
from kubenova.k8s import objects

LOG = logging.getLogger(__name__)

SECRET_PREFIX = "kubenova-agent-"
NODE_KEY = "kubenova.io/node"
LABELS = {
    "app.kubernetes.io/managed-by": "kubenova-operator",
    "app.kubernetes.io/component": "agent-credentials",
}
SELECTOR = ",".join(f"{key}={value}" for key, value in LABELS.items())
# A Node's name is an RFC 1123 subdomain. It must also fit in the Secret's name (253) and the
# queue compute.<node> (255 bytes).
MAX_NODE_NAME = 253 - len(SECRET_PREFIX)
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_LABEL_VALUE = 63
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
# Rounds of an ensure or a Secret write before giving up on a Secret that keeps changing.
_ATTEMPTS = 3


class Revoked(RuntimeError):
    """The node's credentials were revoked while they were being ensured."""


def new_password() -> str:
    """32 alphanumerics (about 190 bits), safe in a URL without escaping, like the local
    stack's hack/rabbitmq-agent-user.sh."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(32))


def node_name_problem(node: str) -> str | None:
    """Why ``node`` cannot have credentials, or None."""
    if len(node) > MAX_NODE_NAME:
        return f"node name longer than {MAX_NODE_NAME} characters"
    if not _NODE_NAME.match(node):
        return f"{node!r} is not a node name"
    return None


def secret_name(node: str) -> str:
    return f"{SECRET_PREFIX}{node}"


def vhost_of(broker_url: str) -> str:
    """The vhost of an AMQP URL, as pika reads it: no path or ``/`` is the vhost ``/``."""
    path = urllib.parse.urlsplit(broker_url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


class Admin(Protocol):
    """What :class:`Minter` needs of RabbitMQ (``rabbitmq_admin.ManagementClient``)."""

    def put_user(self, name: str, password: str) -> None: ...

    def delete_user(self, name: str) -> bool: ...

    def set_permissions(
        self, vhost: str, user: str, permissions: rabbitmq_admin.Permissions
    ) -> None: ...


@dataclasses.dataclass(frozen=True)
class Credentials:
    node: str
    user: str
    amqp_url: str = dataclasses.field(repr=False)


class Minter:
    def __init__(
        self,
        store: objects.Store,
        admin: Admin,
        broker_url: str,
        *,
        messaging: MessagingSettings | None = None,
        password_factory: Callable[[], str] = new_password,
    ) -> None:
        self._store = store
        self._admin = admin
        self._broker = urllib.parse.urlsplit(broker_url)
        self._vhost = vhost_of(broker_url)
        self._messaging = messaging or MessagingSettings()
        self._new_password = password_factory
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)

    def _lock(self, node: str) -> threading.Lock:
        with self._guard:
            return self._locks[node]

    def ensure(self, node: str) -> Credentials:
        """The node's credentials, minted if need be; its user is (re)set on the broker."""
        problem = node_name_problem(node)
        if problem is not None:
            raise ValueError(problem)
        user = self._messaging.agent_user(node)
        permissions = rabbitmq_admin.agent_permissions(node, self._messaging)
        with self._lock(node):
            for _ in range(_ATTEMPTS):
                password = self._stored_password(node, user)
                self._admin.put_user(user, password)
                self._admin.set_permissions(self._vhost, user, permissions)
                # Another replica may have revoked the node since the Secret was read (module
                # docstring): what the user was set to must still be what the Secret holds.
                stored = self._store.get("Secret", secret_name(node))
                if stored is not None and _password(stored) == password:
                    return Credentials(node=node, user=user, amqp_url=self._url(user, password))
                if stored is None:
                    self._admin.delete_user(user)
                    raise Revoked(f"node {node}'s credentials were revoked meanwhile")
        # The user may hold a password the Secret no longer does; the agent's next request
        # sets it again from the Secret.
        raise RuntimeError(f"the Secret of node {node} keeps changing under us")

    def revoke(self, node: str) -> bool:
        """Delete the node's user and Secret; False when neither existed."""
        user = self._messaging.agent_user(node)
        with self._lock(node):
            had_user = self._admin.delete_user(user)
            had_secret = self._store.delete("Secret", secret_name(node))
            # A replica serving the node's agent may have set the user back in between, from
            # the Secret it had read. One that does so later undoes it itself (it then finds
            # no Secret); a user set from a Secret made after this delete comes with it.
            self._admin.delete_user(user)
        if had_user or had_secret:
            LOG.info("revoked RabbitMQ user %s of node %s", user, node, extra={"node": node})
        return had_user or had_secret

    def minted_nodes(self) -> set[str]:
        """The nodes that have a Secret here."""
        nodes = set()
        for stored in self._store.list("Secret", SELECTOR):
            node = stored.annotations.get(NODE_KEY)
            if node and stored.name == secret_name(node):
                nodes.add(node)
            else:
                LOG.warning("Secret %s names no node; left alone", stored.name)
        return nodes

    def sweep(self, keep: Collection[str]) -> list[str]:
        """Revoke every minted node not in ``keep``; returns those revoked."""
        gone = sorted(self.minted_nodes() - set(keep))
        for node in gone:
            self.revoke(node)
        return gone

    def _stored_password(self, node: str, user: str) -> str:
        name = secret_name(node)
        for _ in range(_ATTEMPTS):
            stored = self._store.get("Secret", name)
            password = _password(stored)
            if password:
                return password
            fresh = self._new_password()
            secret = objects.StoredObject(
                name=name,
                data={"username": user.encode(), "password": fresh.encode()},
                labels=_labels(node),
                annotations={NODE_KEY: node},
                resource_version=stored.resource_version if stored is not None else None,
            )
            try:
                if stored is None:
                    self._store.create("Secret", secret)
                else:  # emptied by hand: give it a password again
                    self._store.replace("Secret", secret)
            except (objects.AlreadyExists, objects.Conflict):
                continue  # written meanwhile: use what is there now
            LOG.info("minted RabbitMQ user %s for node %s", user, node, extra={"node": node})
            return fresh
        raise RuntimeError(f"the Secret {self._store.namespace}/{name} keeps changing under us")

    def _url(self, user: str, password: str) -> str:
        host_port = self._broker.netloc.rpartition("@")[2]
        netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
        return urllib.parse.urlunsplit(self._broker._replace(netloc=f"{netloc}@{host_port}"))


def _password(stored: objects.StoredObject | None) -> str:
    return (stored.data.get("password") or b"").decode() if stored is not None else ""


def _labels(node: str) -> dict[str, str]:
    labels = dict(LABELS)
    # Label values stop at 63 characters; longer names are in the annotation only.
    if len(node) <= _MAX_LABEL_VALUE:
        labels[NODE_KEY] = node
    return labels
