"""A stand-in for the EC2 API's cluster (kubenova.ec2.cluster.Cluster): objects in memory,
with the uid, creation time and generation the kube-apiserver would give them, and custom
objects' specs admitted by their CRD's schema as the kube-apiserver admits them."""

from __future__ import annotations

import base64
import copy
import datetime
import itertools
import json
import pathlib
import re
import uuid
from typing import Any

import yaml
from kubernetes.client import exceptions as k8s_exceptions

from tests.unit.ec2.fake_capacity import INSTANCE_COUNT, exceeded_quota, hypervisor

_CLOCK = itertools.count()
_VERSIONS = itertools.count(1)
_CRDS = pathlib.Path(__file__).resolve().parents[3] / "crds"


def _version() -> str:
    # Every write gives the object a new resourceVersion, as the kube-apiserver does.
    return str(next(_VERSIONS))


def _conflict() -> k8s_exceptions.ApiException:
    return k8s_exceptions.ApiException(status=409, reason="Conflict")


def _invalid(kind: str, name: str, field: str, reason: str) -> k8s_exceptions.ApiException:
    refused = k8s_exceptions.ApiException(status=422, reason="Unprocessable Entity")
    message = f'{kind}.compute.kubenova.io "{name}" is invalid: {field}: {reason}'
    refused.body = json.dumps({"kind": "Status", "message": message, "code": 422})
    return refused


def spec_schema(plural: str) -> dict[str, Any]:
    """The openAPIV3Schema of a CRD's spec, as crds/ installs it."""
    crd = yaml.safe_load((_CRDS / f"compute.kubenova.io_{plural}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def admitted(schema: dict[str, Any], value: Any, field: str, refuse: Any) -> Any:
    """``value`` as the kube-apiserver keeps it under a structural schema: fields the schema
    does not name are pruned (silently, as the kube-apiserver does), a value it refuses is
    ``refuse(field, reason)``."""
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise refuse(field, "must be an object")
        for required in schema.get("required") or []:
            if required not in value:
                raise refuse(f"{field}.{required}", "Required value")
        known = schema.get("properties")
        if known is None:
            return dict(value)
        return {
            key: admitted(known[key], item, f"{field}.{key}", refuse)
            for key, item in value.items()
            if key in known
        }
    if kind == "string":
        if not isinstance(value, str):
            raise refuse(field, "must be a string")
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            raise refuse(field, f"Invalid value: {len(value)} characters is out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise refuse(field, f"Invalid value: {value!r} must match {schema['pattern']!r}")
        if "enum" in schema and value not in schema["enum"]:
            raise refuse(field, f"Unsupported value: {value!r}")
    if kind == "array":
        return [
            admitted(schema["items"], item, f"{field}[{i}]", refuse) for i, item in enumerate(value)
        ]
    return value


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch of a map: None removes a key."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def _merge_patched(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge patch ``patch`` applied (RFC 7386): maps merge key by
    key, None removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patched(merged.get(key), value)
    return merged


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
        self.hypervisor_objects = [hypervisor("h1"), hypervisor("h2", up=False, zone="az-2")]
        #: ResourceQuotas, by (namespace, name): admission counts Instances against them.
        self.quota_objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.instance_objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[tuple[str, str]] = []
        #: The console output of each Instance, by (namespace, name); none when absent.
        self.console: dict[tuple[str, str], str] = {}
        #: Secrets and ConfigMaps, by (namespace, name), as the kube-apiserver answers them.
        self.secret_objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.config_map_objects: dict[tuple[str, str], dict[str, Any]] = {}
        #: Called before each write of an Instance, ConfigMap or Secret (a test's concurrent
        #: writer).
        self.before_write: list[Any] = []
        #: InstanceSnapshots, by (namespace, name).
        self.snapshot_objects: dict[tuple[str, str], dict[str, Any]] = {}

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

        def refuse(field: str, reason: str) -> k8s_exceptions.ApiException:
            return _invalid("Instance", name, field, reason)

        spec = admitted(spec_schema("instances"), copy.deepcopy(body["spec"]), "spec", refuse)
        self._admit_by_quota(namespace, name)
        made = obj("Instance", name, spec, namespace)
        made["metadata"]["labels"] = dict(body["metadata"].get("labels") or {})
        made["metadata"]["annotations"] = dict(body["metadata"].get("annotations") or {})
        self.instance_objects[(namespace, name)] = made
        return copy.deepcopy(made)

    def _instance_quotas(self, namespace: str) -> list[dict[str, Any]]:
        # A scoped quota counts no Instance: the object-count evaluator matches no scope.
        return [
            quota
            for (ns, _), quota in self.quota_objects.items()
            if ns == namespace
            and INSTANCE_COUNT in quota["spec"].get("hard", {})
            and not quota["spec"].get("scopes")
        ]

    def _admit_by_quota(self, namespace: str, name: str) -> None:
        """Quota admission: refused when one more Instance exceeds a quota; otherwise every
        quota's status.used counts it at once, as admission records it."""
        quotas = self._instance_quotas(namespace)
        for quota in quotas:
            if int(quota["status"]["used"][INSTANCE_COUNT]) + 1 > int(
                quota["spec"]["hard"][INSTANCE_COUNT]
            ):
                raise exceeded_quota(name, quota)
        for quota in quotas:
            used = quota["status"]["used"]
            used[INSTANCE_COUNT] = str(int(used[INSTANCE_COUNT]) + 1)

    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy([q for (ns, _), q in self.quota_objects.items() if ns == namespace])

    def _before_patch(
        self, namespace: str, name: str, current: dict[str, Any], patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Run the hooks of a write, then refuse, as the apiserver does, a patch whose
        ``metadata.resourceVersion`` is not the object's (409); the patch's metadata."""
        for hook in list(self.before_write):
            hook(namespace, name)
        patch_meta: dict[str, Any] = patch.get("metadata") or {}
        wanted = patch_meta.get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise _conflict()
        return patch_meta

    def patch_instance(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        current = self.instance_objects.get((namespace, name))
        if current is None:
            return None
        patch_meta = self._before_patch(namespace, name, current, patch)
        spec = current["spec"]
        if "spec" in patch:

            def refuse(field: str, reason: str) -> k8s_exceptions.ApiException:
                return _invalid("Instance", name, field, reason)

            spec = admitted(
                spec_schema("instances"), _merge_patched(spec, patch["spec"]), "spec", refuse
            )
        current["metadata"]["labels"].update(patch_meta.get("labels") or {})
        _merge(
            current["metadata"].setdefault("annotations", {}), patch_meta.get("annotations") or {}
        )
        current["metadata"]["resourceVersion"] = _version()
        if spec != current["spec"]:
            # The kube-apiserver moves the generation when the spec changes, and only then.
            current["spec"] = spec
            current["metadata"]["generation"] += 1
        return copy.deepcopy(current)

    def delete_instance(self, namespace: str, name: str, uid: str) -> bool:
        current = self.instance_objects.get((namespace, name))
        if current is None or current["metadata"]["uid"] != uid:
            return False
        del self.instance_objects[(namespace, name)]
        self.deleted.append((namespace, name))
        # The quota controller gives the room back (on the real cluster, moments later).
        for quota in self._instance_quotas(namespace):
            used = quota["status"]["used"]
            used[INSTANCE_COUNT] = str(max(0, int(used[INSTANCE_COUNT]) - 1))
        return True

    def instance_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy([o for (ns, _), o in self.snapshot_objects.items() if ns == namespace])

    def instance_snapshots_named(self, name: str) -> list[dict[str, Any]]:
        return copy.deepcopy([o for (_, n), o in self.snapshot_objects.items() if n == name])

    def create_instance_snapshot(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if (namespace, name) in self.snapshot_objects:
            raise k8s_exceptions.ApiException(status=409, reason="AlreadyExists")

        def refuse(field: str, reason: str) -> k8s_exceptions.ApiException:
            return _invalid("InstanceSnapshot", name, field, reason)

        spec = admitted(spec_schema("instancesnapshots"), body.get("spec"), "spec", refuse)
        made = obj("InstanceSnapshot", name, spec, namespace)
        for key in ("labels", "annotations", "ownerReferences"):
            if body["metadata"].get(key):
                made["metadata"][key] = copy.deepcopy(body["metadata"][key])
        self.snapshot_objects[(namespace, name)] = made
        return copy.deepcopy(made)

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
        made["metadata"]["annotations"] = dict(body["metadata"].get("annotations") or {})
        # stringData is write-only: the apiserver keeps and answers it base64 in data.
        data = dict(body.get("data") or {})
        for key, value in (body.get("stringData") or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        made["data"] = data
        self.secret_objects[(namespace, name)] = made
        return copy.deepcopy(made)

    def patch_secret(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        current = self.secret_objects.get((namespace, name))
        if current is None:
            return None
        patch_meta = self._before_patch(namespace, name, current, patch)
        _merge(
            current["metadata"].setdefault("annotations", {}), patch_meta.get("annotations") or {}
        )
        current["metadata"]["resourceVersion"] = _version()
        return copy.deepcopy(current)

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
        self._before_patch(namespace, name, current, patch)
        _merge(current.setdefault("data", {}), patch.get("data") or {})
        current["metadata"]["resourceVersion"] = _version()
        return copy.deepcopy(current)

    # For the tests.
    def add_quota(
        self, namespace: str, name: str, instances: int, scopes: list[str] | None = None
    ) -> None:
        """A ResourceQuota of ``instances`` Instances, its status as the quota controller
        fills it in: the limit, and the Instances the namespace already has."""
        quota = obj("ResourceQuota", name, {"hard": {INSTANCE_COUNT: str(instances)}}, namespace)
        quota["apiVersion"] = "v1"
        if scopes:
            quota["spec"]["scopes"] = list(scopes)
        counted = 0 if scopes else len(self.instances(namespace))
        quota["status"] = {
            "hard": {INSTANCE_COUNT: str(instances)},
            "used": {INSTANCE_COUNT: str(counted)},
        }
        self.quota_objects[(namespace, name)] = quota

    def add_flavor(self, name: str, vcpus: int = 1, memoryMiB: int = 512, diskGiB: int = 1) -> None:  # noqa: N803
        spec = {"vcpus": vcpus, "memoryMiB": memoryMiB, "diskGiB": diskGiB}
        self.flavor_objects[name] = obj("Flavor", name, spec)

    def add_image(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the Image ``body`` as the operator creates one, admitted by the Images CRD."""
        name = body["metadata"]["name"]

        def refuse(field: str, reason: str) -> k8s_exceptions.ApiException:
            return _invalid("Image", name, field, reason)

        if name in self.image_objects:
            raise k8s_exceptions.ApiException(status=409, reason="AlreadyExists")
        made = obj("Image", name, admitted(spec_schema("images"), body["spec"], "spec", refuse))
        made["metadata"]["labels"] = dict(body["metadata"].get("labels") or {})
        made["metadata"]["annotations"] = dict(body["metadata"].get("annotations") or {})
        self.image_objects[name] = made
        return made

    def add_instance(
        self, namespace: str, name: str, phase: str | None = "Running", **spec: Any
    ) -> dict[str, Any]:
        made = obj("Instance", name, {"flavor": "m1.tiny", "image": "cirros", **spec}, namespace)
        if phase:
            made["status"] = {"phase": phase, "observedGeneration": 1}
        self.instance_objects[(namespace, name)] = made
        return made
