"""Secrets and ConfigMaps in the operator's own namespace.

The certificate authority (``kubenova.certs``) and the agents' RabbitMQ credentials
(``kubenova.agent_credentials``) keep what they make here. Values are bytes both ways: the
base64 of a Secret's ``data`` never leaves this module.

Writes are guarded the way the apiserver guards them: :meth:`create` of a name that exists
raises :class:`AlreadyExists`, and :meth:`replace` over a ``resource_version`` that is no
longer current raises :class:`Conflict`, so two writers never silently overwrite each other.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

Kind = Literal["Secret", "ConfigMap"]


class AlreadyExists(Exception):
    """A create found the name taken (HTTP 409 on create)."""


class Conflict(Exception):
    """A replace was based on an outdated resourceVersion (HTTP 409 on update)."""


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """One Secret or ConfigMap as this module reads and writes it."""

    name: str
    data: Mapping[str, bytes]
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # A Secret's type (``Opaque``, ``kubernetes.io/tls``...); unused for ConfigMaps.
    type: str = "Opaque"
    resource_version: str | None = None


class Store(Protocol):
    """What the users of this module need; :class:`NamespacedObjects` is the real one."""

    namespace: str

    def get(self, kind: Kind, name: str) -> StoredObject | None: ...

    def list(self, kind: Kind, label_selector: str) -> list[StoredObject]: ...

    def create(self, kind: Kind, obj: StoredObject) -> StoredObject: ...

    def replace(self, kind: Kind, obj: StoredObject) -> StoredObject: ...

    def delete(self, kind: Kind, name: str) -> bool: ...


class NamespacedObjects:
    """Secrets and ConfigMaps of one namespace, through the Kubernetes API."""

    def __init__(self, namespace: str, api_client: k8s_client.ApiClient | None = None) -> None:
        self.namespace = namespace
        self._core = k8s_client.CoreV1Api(api_client or k8s_client.ApiClient())

    def get(self, kind: Kind, name: str) -> StoredObject | None:
        read = (
            self._core.read_namespaced_secret
            if kind == "Secret"
            else self._core.read_namespaced_config_map
        )
        try:
            obj = read(name, self.namespace)
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _stored(kind, obj)

    def list(self, kind: Kind, label_selector: str) -> list[StoredObject]:
        list_ = (
            self._core.list_namespaced_secret
            if kind == "Secret"
            else self._core.list_namespaced_config_map
        )
        result = list_(self.namespace, label_selector=label_selector)
        return [_stored(kind, obj) for obj in result.items or []]

    def create(self, kind: Kind, obj: StoredObject) -> StoredObject:
        # The generated client takes plain dicts as bodies, whatever its annotations say.
        body: Any = _body(kind, obj, self.namespace)
        created: Any
        try:
            if kind == "Secret":
                created = self._core.create_namespaced_secret(self.namespace, body)
            else:
                created = self._core.create_namespaced_config_map(self.namespace, body)
        except k8s_exceptions.ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(f"{kind} {self.namespace}/{obj.name} exists") from exc
            raise
        return _stored(kind, created)

    def replace(self, kind: Kind, obj: StoredObject) -> StoredObject:
        """Overwrite ``obj.name`` with ``obj``; its ``resource_version`` must be current."""
        body: Any = _body(kind, obj, self.namespace)
        replaced: Any
        try:
            if kind == "Secret":
                replaced = self._core.replace_namespaced_secret(obj.name, self.namespace, body)
            else:
                replaced = self._core.replace_namespaced_config_map(obj.name, self.namespace, body)
        except k8s_exceptions.ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"{kind} {self.namespace}/{obj.name} changed meanwhile") from exc
            raise
        return _stored(kind, replaced)

    def delete(self, kind: Kind, name: str) -> bool:
        """Delete ``name``; False when it was already gone."""
        delete = (
            self._core.delete_namespaced_secret
            if kind == "Secret"
            else self._core.delete_namespaced_config_map
        )
        try:
            delete(name, self.namespace)
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _body(kind: Kind, obj: StoredObject, namespace: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": obj.name,
        "namespace": namespace,
        "labels": dict(obj.labels),
        "annotations": dict(obj.annotations),
    }
    if obj.resource_version is not None:
        metadata["resourceVersion"] = obj.resource_version
    if kind == "Secret":
        data = {key: base64.b64encode(value).decode() for key, value in obj.data.items()}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": obj.type,
            "data": data,
        }
    # A ConfigMap holds text: what it publishes (certificates) is PEM.
    text = {key: value.decode() for key, value in obj.data.items()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": text}


def _stored(kind: Kind, obj: Any) -> StoredObject:
    meta = obj.metadata
    if kind == "Secret":
        data = {key: base64.b64decode(value) for key, value in (obj.data or {}).items()}
        type_ = obj.type or "Opaque"
    else:
        data = {key: value.encode() for key, value in (obj.data or {}).items()}
        type_ = "Opaque"
    return StoredObject(
        name=meta.name,
        data=data,
        labels=dict(meta.labels or {}),
        annotations=dict(meta.annotations or {}),
        type=type_,
        resource_version=meta.resource_version,
    )
