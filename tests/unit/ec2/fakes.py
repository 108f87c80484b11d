"""A stand-in for the EC2 API's cluster (kubenova.ec2.cluster.Cluster): objects in memory,
with the uid, creation time and generation the kube-apiserver would give them."""

from __future__ import annotations

import copy
import datetime
import itertools
import uuid
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

_CLOCK = itertools.count()


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
        current["metadata"]["labels"].update((patch.get("metadata") or {}).get("labels") or {})
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

    # For the tests.
    def add_instance(
        self, namespace: str, name: str, phase: str | None = "Running", **spec: Any
    ) -> dict[str, Any]:
        made = obj("Instance", name, {"flavor": "m1.tiny", "image": "cirros", **spec}, namespace)
        if phase:
            made["status"] = {"phase": phase, "observedGeneration": 1}
        self.instance_objects[(namespace, name)] = made
        return made
