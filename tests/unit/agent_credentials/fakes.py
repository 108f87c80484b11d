"""One fake per boundary of the agent-credentials exchange: the namespace's Secrets and
ConfigMaps, RabbitMQ's management API, the TokenReview API and the Nodes.

:class:`FakeObjects` keeps objects as the apiserver does: a resourceVersion that changes on
every write, AlreadyExists for a create over an existing name, Conflict for a replace over a
stale version. ``calls`` of every fake records what was asked, in order, across fakes that
share one list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator, Sequence

from kubenova.agent_credentials import minter as minter_mod
from kubenova.agent_credentials import rabbitmq_admin
from kubenova.k8s import objects
from kubenova.k8s.nodes import NodeEvent
from kubenova.k8s.tokenreview import TokenReviewResult

AGENT_USERNAME = "system:serviceaccount:kubenova:kubenova-agent"
AUDIENCE = "kubenova-operator"
NODE_SELECTOR = "kubenova.io/hypervisor=true"


class FakeObjects:
    def __init__(self, calls: list[str] | None = None, namespace: str = "kubenova") -> None:
        self.namespace = namespace
        self.items: dict[tuple[str, str], objects.StoredObject] = {}
        self.calls = calls if calls is not None else []
        self._version = 0
        # Runs once before the next create: another writer acting in between.
        self.before_create: object = None
        # Every call fails, as while the apiserver is away.
        self.down = False

    def get(self, kind: objects.Kind, name: str) -> objects.StoredObject | None:
        self._call(f"get {kind} {name}")
        return self.items.get((kind, name))

    def list(self, kind: objects.Kind, label_selector: str) -> list[objects.StoredObject]:
        self._call(f"list {kind} {label_selector}")
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        return [
            obj
            for (k, _), obj in sorted(self.items.items())
            if k == kind and all(obj.labels.get(key) == v for key, v in wanted.items())
        ]

    def create(self, kind: objects.Kind, obj: objects.StoredObject) -> objects.StoredObject:
        self._call(f"create {kind} {obj.name}")
        action, self.before_create = self.before_create, None
        if callable(action):
            action()
        if (kind, obj.name) in self.items:
            raise objects.AlreadyExists(obj.name)
        return self._store(kind, obj)

    def replace(self, kind: objects.Kind, obj: objects.StoredObject) -> objects.StoredObject:
        self._call(f"replace {kind} {obj.name}")
        current = self.items.get((kind, obj.name))
        if current is None or current.resource_version != obj.resource_version:
            raise objects.Conflict(obj.name)
        return self._store(kind, obj)

    def delete(self, kind: objects.Kind, name: str) -> bool:
        self._call(f"delete {kind} {name}")
        return self.items.pop((kind, name), None) is not None

    def _call(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise ConnectionError("apiserver unreachable")

    def put(self, kind: objects.Kind, obj: objects.StoredObject) -> objects.StoredObject:
        """Store ``obj`` as someone else would have, without recording a call."""
        return self._store(kind, obj)

    def _store(self, kind: objects.Kind, obj: objects.StoredObject) -> objects.StoredObject:
        self._version += 1
        stored = dataclasses.replace(obj, resource_version=str(self._version))
        self.items[(kind, obj.name)] = stored
        return stored


class FakeAdmin:
    """RabbitMQ's users, their passwords and permissions."""

    def __init__(self, calls: list[str] | None = None) -> None:
        self.passwords: dict[str, str] = {}
        self.permissions: dict[tuple[str, str], rabbitmq_admin.Permissions] = {}
        self.calls = calls if calls is not None else []
        self.down = False
        # How many of the next calls fail, as while the broker restarts.
        self.failures = 0

    def put_user(self, name: str, password: str) -> None:
        self._call(f"put_user {name}")
        self.passwords[name] = password

    def delete_user(self, name: str) -> bool:
        self._call(f"delete_user {name}")
        self.permissions = {k: v for k, v in self.permissions.items() if k[1] != name}
        return self.passwords.pop(name, None) is not None

    def set_permissions(
        self, vhost: str, user: str, permissions: rabbitmq_admin.Permissions
    ) -> None:
        self._call(f"set_permissions {vhost} {user}")
        self.permissions[(vhost, user)] = permissions

    def _call(self, call: str) -> None:
        self.calls.append(call)
        failing, self.failures = self.failures > 0, max(0, self.failures - 1)
        if self.down or failing:
            raise rabbitmq_admin.ManagementError("broker unreachable")


def agent_review(
    node: str | None = "node-a",
    *,
    username: str = AGENT_USERNAME,
    audiences: Sequence[str] = (AUDIENCE,),
    pod: str | None = "kubenova-agent-x7k2q",
    authenticated: bool = True,
    error: str = "",
) -> TokenReviewResult:
    """What the apiserver says of a pod-bound (or, with ``pod=None``, node-bound) token."""
    extra: dict[str, tuple[str, ...]] = {}
    if node is not None:
        extra["authentication.kubernetes.io/node-name"] = (node,)
        extra["authentication.kubernetes.io/node-uid"] = ("3f1c-node-uid",)
    if pod is not None:
        extra["authentication.kubernetes.io/pod-name"] = (pod,)
        extra["authentication.kubernetes.io/pod-uid"] = ("9a0e-pod-uid",)
    return TokenReviewResult(
        authenticated=authenticated,
        username=username if authenticated else "",
        audiences=tuple(audiences) if authenticated else (),
        extra=extra if authenticated else {},
        error=error,
    )


class FakeReviewer:
    """Answers a review of each known token; any other token is not authenticated."""

    def __init__(self, reviews: dict[str, TokenReviewResult] | None = None) -> None:
        self.reviews = dict(reviews or {})
        self.asked: list[tuple[str, tuple[str, ...]]] = []
        self.down = False

    def review(self, token: str, audiences: Sequence[str]) -> TokenReviewResult:
        self.asked.append((token, tuple(audiences)))
        if self.down:
            raise ConnectionError("apiserver unreachable")
        found = self.reviews.get(token)
        if found is None:
            return TokenReviewResult(authenticated=False, error="invalid bearer token")
        return found


class FakeNodes:
    """Hypervisor nodes by name, and scripted watches: each entry of ``watches`` is what one
    watch yields (events, or an exception to raise)."""

    def __init__(self, hypervisors: Collection[str] = ("node-a", "node-b")) -> None:
        self.hypervisors = set(hypervisors)
        self.watches: list[list[NodeEvent | Exception]] = []
        self.lists = 0
        self.watched_from: list[str] = []
        self.on_exhausted: object = None
        # Called with the list's number (1 for the first) before it is answered.
        self.on_list: Callable[[int], object] | None = None

    def is_selected(self, name: str, label_selector: str) -> bool:
        return name in self.hypervisors

    def addresses(self, name: str) -> list[str]:
        """Each hypervisor's InternalIP, 10.0.0.N in the order of the names."""
        ordered = sorted(self.hypervisors)
        return [f"10.0.0.{ordered.index(name) + 1}"] if name in self.hypervisors else []

    def list_selected(self, label_selector: str) -> tuple[set[str], str]:
        self.lists += 1
        if self.on_list is not None:
            self.on_list(self.lists)
        return set(self.hypervisors), f"list-{self.lists}"

    def watch_selected(
        self, label_selector: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[NodeEvent, str]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            if callable(self.on_exhausted):
                self.on_exhausted()
            return
        for n, item in enumerate(self.watches.pop(0)):
            if isinstance(item, Exception):
                raise item
            yield item, f"{resource_version}+{n + 1}"

    def stop_watching(self) -> None:
        pass


def minted(node: str, store: FakeObjects, password: str = "p" * 32) -> minter_mod.Credentials:
    """A node whose Secret exists already, as a previous mint left it."""
    store.put(
        "Secret",
        objects.StoredObject(
            name=minter_mod.secret_name(node),
            data={"username": f"agent-{node}".encode(), "password": password.encode()},
            labels={**minter_mod.LABELS, minter_mod.NODE_KEY: node},
            annotations={minter_mod.NODE_KEY: node},
        ),
    )
    return minter_mod.Credentials(node, f"agent-{node}", "")
