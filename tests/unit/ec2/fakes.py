"""A stand-in for the EC2 API's cluster (kubenova.ec2.cluster.Cluster): objects in memory,
with the uid, creation time and generation the kube-apiserver would give them."""

from __future__ import annotations

import base64
import copy
import datetime
import itertools
import uuid
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

_CLOCK = itertools.count()
_VERSIONS = itertools.count(1)


def _version() -> str:
    # Every write gives the object a new resourceVersion, as the kube-apiserver does.
    return str(next(_VERSIONS))


def _conflict() -> k8s_exceptions.ApiException:
    return k8s_exceptions.ApiException(status=409, reason="Conflict")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch of a map: None removes a key."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def _stamp() -> str:
    # Distinct, increasing creation times, as objects made one after another have.
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        seconds=next(_CLOCK)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def obj(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": _stamp(),
        "generation": 1,
        "resourceVersion": _version(),
        "labels": {},
    }
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": spec,
    }


class FakeCluster:
    def __init__(self) -> None:
        self.flavor_objects = {
            "m1.tiny": obj("Flavor", "m1.tiny", {"vcpus": 1, "memoryMiB": 512, "diskGiB": 1}),
            "m1.small": obj("Flavor", "m1.small", {"vcpus": 1, "memoryMiB": 2048, "diskGiB": 20}),
        }
        self.image_objects = {
            "cirros": obj(
                "Image",
                "cirros",
                {"source": {"url": "http://images/cirros.qcow2"}, "diskFormat": "qcow2"},
            )
        }
        self.hypervisor_objects = [
            {"metadata": {"name": "h1", "labels": {}}, "status": {"state": "up"}},
            {
                "metadata": {"name": "h2", "labels": {"topology.kubernetes.io/zone": "az-2"}},
                "status": {"state": "down"},
            },
        ]
        self.instance_objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[tuple[str, str]] = []
        #: The console output of each Instance, by (namespace, name); none when absent.
        self.console: dict[tuple[str, str], str] = {}
        #: Secrets and ConfigMaps, by (namespace, name), as the kube-apiserver answers them.
        self.secret_objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.config_map_objects: dict[tuple[str, str], dict[str, Any]] = {}
        #: Called before each write of an Instance or ConfigMap (a test's concurrent writer).
        self.before_write: list[Any] = []

    # The Cluster interface.
    def flavors(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.flavor_objects.values()))

    def images(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.image_objects.values()))

    def hypervisors(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.hypervisor_objects)

    def flavor(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.flavor_objects.get(name))

    def instances(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        found = [o for (ns, _), o in self.instance_objects.items() if ns == namespace]
        if label_selector:
            key, _, value = label_selector.partition("=")
            found = [o for o in found if o["metadata"]["labels"].get(key) == value]
        return copy.deepcopy(found)

    def create_instance(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if (namespace, name) in self.instance_objects:
            raise k8s_exceptions.ApiException(status=409, reason="AlreadyExists")
        made = obj("Instance", name, copy.deepcopy(body["spec"]), namespace)
        made["metadata"]["labels"] = dict(body["metadata"].get("labels") or {})
        made["metadata"]["annotations"] = dict(body["metadata"].get("annotations") or {})
        self.instance_objects[(namespace, name)] = made
        return copy.deepcopy(made)

    def patch_instance(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        current = self.instance_objects.get((namespace, name))
        if current is None:
            return None
        for hook in list(self.before_write):
            hook(namespace, name)
        patch_meta = patch.get("metadata") or {}
        wanted = patch_meta.get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise _conflict()
        current["metadata"]["labels"].update(patch_meta.get("labels") or {})
        _merge(
            current["metadata"].setdefault("annotations", {}), patch_meta.get("annotations") or {}
        )
        current["metadata"]["resourceVersion"] = _version()
        if "spec" in patch:
            current["spec"].update(patch["spec"])
            current["metadata"]["generation"] += 1
        return copy.deepcopy(current)

    def delete_instance(self, namespace: str, name: str, uid: str) -> bool:
        current = self.instance_objects.get((namespace, name))
        if current is None or current["metadata"]["uid"] != uid:
            return False
        del self.instance_objects[(namespace, name)]
        self.deleted.append((namespace, name))
        return True

    def console_log(self, namespace: str, name: str) -> str | None:
        return self.console.get((namespace, name))

    def instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.instance_objects.get((namespace, name)))

    def secrets(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        # The selector the EC2 API uses for Secrets is a label's existence.
        return copy.deepcopy(
            [
                s
                for (ns, _), s in self.secret_objects.items()
                if ns == namespace and label_selector in s["metadata"]["labels"]
            ]
        )

    def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if (namespace, name) in self.secret_objects:
            raise k8s_exceptions.ApiException(status=409, reason="AlreadyExists")
        made = obj("Secret", name, {}, namespace)
        del made["spec"]
        made["apiVersion"] = "v1"
        made["type"] = body.get("type", "Opaque")
        made["metadata"]["labels"] = dict(body["metadata"].get("labels") or {})
        # stringData is write-only: the apiserver keeps and answers it base64 in data.
        data = dict(body.get("data") or {})
        for key, value in (body.get("stringData") or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        made["data"] = data
        self.secret_objects[(namespace, name)] = made
        return copy.deepcopy(made)

    def delete_secret(self, namespace: str, name: str, uid: str) -> bool:
        current = self.secret_objects.get((namespace, name))
        if current is None or current["metadata"]["uid"] != uid:
            return False
        del self.secret_objects[(namespace, name)]
        return True

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.config_map_objects.get((namespace, name)))

    def create_config_map(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if (namespace, name) in self.config_map_objects:
            raise k8s_exceptions.ApiException(status=409, reason="AlreadyExists")
        made = obj("ConfigMap", name, {}, namespace)
        del made["spec"]
        made["apiVersion"] = "v1"
        made["data"] = dict(body.get("data") or {})
        self.config_map_objects[(namespace, name)] = made
        return copy.deepcopy(made)

    def patch_config_map(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        current = self.config_map_objects.get((namespace, name))
        if current is None:
            return None
        for hook in list(self.before_write):
            hook(namespace, name)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise _conflict()
        _merge(current.setdefault("data", {}), patch.get("data") or {})
        current["metadata"]["resourceVersion"] = _version()
        return copy.deepcopy(current)

    # For the tests.
    def add_instance(
        self, namespace: str, name: str, phase: str | None = "Running", **spec: Any
    ) -> dict[str, Any]:
        made = obj("Instance", name, {"flavor": "m1.tiny", "image": "cirros", **spec}, namespace)
        if phase:
            made["status"] = {"phase": phase, "observedGeneration": 1}
        self.instance_objects[(namespace, name)] = made
        return made
