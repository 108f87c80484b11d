"""A fake of the Kubernetes CoreV1Api's Secret and ConfigMap calls, for the real
``kubenova.k8s.objects.NamespacedObjects`` to run against.

It answers as the apiserver does: 404 for a read of a missing name, 409 for a create over an
existing name, and 409 for a replace whose ``resourceVersion`` is not the current one, with a
new resourceVersion on every write. ``calls`` records each call before it acts (a
``tests.unit.interleavings.Turns`` there makes callers take turns), and ``secret_writes`` every
``tls.crt`` written to a Secret, so a test can count the CAs made.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s import objects


class FakeCoreV1Api:
    def __init__(self, calls: list[str] | None = None) -> None:
        self.calls = calls if calls is not None else []
        self.items: dict[tuple[str, str], Any] = {}
        self.secret_writes: list[bytes] = []
        self.conflicts = 0
        # Runs once before the next replace is judged: another writer acting in between.
        self.before_replace: Callable[[], object] | None = None
        self._version = 0

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        return self._read("Secret", name)

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        return self._read("ConfigMap", name)

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("Secret", body)

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("ConfigMap", body)

    def replace_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> Any:
        return self._replace("Secret", body)

    def replace_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any]) -> Any:
        return self._replace("ConfigMap", body)

    def _read(self, kind: str, name: str) -> Any:
        self.calls.append(f"read {kind} {name}")
        found = self.items.get((kind, name))
        if found is None:
            raise k8s_exceptions.ApiException(status=404, reason="Not Found")
        return found

    def _create(self, kind: str, body: dict[str, Any]) -> Any:
        name = body["metadata"]["name"]
        self.calls.append(f"create {kind} {name}")
        if (kind, name) in self.items:
            raise k8s_exceptions.ApiException(status=409, reason="AlreadyExists")
        return self._store(kind, body)

    def _replace(self, kind: str, body: dict[str, Any]) -> Any:
        name = body["metadata"]["name"]
        self.calls.append(f"replace {kind} {name}")
        action, self.before_replace = self.before_replace, None
        if action is not None:
            action()
        current = self.items.get((kind, name))
        sent = body["metadata"].get("resourceVersion")
        if current is None or current.metadata.resource_version != sent:
            self.conflicts += 1
            raise k8s_exceptions.ApiException(status=409, reason="Conflict")
        return self._store(kind, body)

    def _store(self, kind: str, body: dict[str, Any]) -> Any:
        self._version += 1
        meta = body["metadata"]
        metadata = k8s_client.V1ObjectMeta(
            name=meta["name"],
            namespace=meta["namespace"],
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            resource_version=str(self._version),
        )
        stored: Any
        if kind == "Secret":
            stored = k8s_client.V1Secret(
                metadata=metadata, type=body["type"], data=dict(body["data"])
            )
            self.secret_writes.append(base64.b64decode(body["data"]["tls.crt"]))
        else:
            stored = k8s_client.V1ConfigMap(metadata=metadata, data=dict(body["data"]))
        self.items[(kind, meta["name"])] = stored
        return stored


def namespaced_objects(
    api: FakeCoreV1Api, monkeypatch: pytest.MonkeyPatch, namespace: str = "kubenova"
) -> objects.NamespacedObjects:
    """The real ``NamespacedObjects``, speaking to ``api``."""
    monkeypatch.setattr(k8s_client, "CoreV1Api", lambda _api_client: api)
    return objects.NamespacedObjects(namespace, api_client=k8s_client.ApiClient())
