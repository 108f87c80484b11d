"""A recording fake of :class:`kubenova.k8s.client.KubeClient`."""

from __future__ import annotations

import collections
import copy
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

#: The namespace :meth:`RecordingKube.add_instance` puts Instances in.
NAMESPACE = "default"


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, as the apiserver applies ``{"status": ...}``."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class RecordingKube:
    """The KubeClient methods the operator calls, over objects held in memory.

    Every call is counted in :attr:`calls`; status patches are applied as JSON merge patches
    and recorded (a patch of an object that does not exist answers ``False``, the client's
    404); Flavor and Image GETs are recorded in order in :attr:`gets`. Hosts in
    :attr:`failing` get a 500 for their Hypervisor status patch.
    """

    def __init__(
        self,
        *,
        flavors: dict[str, dict[str, Any]] | None = None,
        images: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.hypervisors: dict[str, dict[str, Any]] = {}
        self.server_groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.flavors: dict[str, dict[str, Any]] = dict(flavors or {})
        self.images: dict[str, dict[str, Any]] = dict(images or {})
        self.calls: collections.Counter[str] = collections.Counter()
        self.instance_patches: list[tuple[str, dict[str, Any]]] = []
        self.hypervisor_patches: list[tuple[str, dict[str, Any]]] = []
        self.gets: list[tuple[str, str]] = []
        # Hosts whose status patch the apiserver fails with a 500.
        self.failing: set[str] = set()
        # Events posted: (object name, reason, message, type).
        self.events: list[tuple[str, str, str, str]] = []
        # InstanceAction objects by (namespace, name), as last written.
        self.instance_actions: dict[tuple[str, str], dict[str, Any]] = {}

    def clear(self) -> None:
        """Forget the calls and patches so far (the objects stay)."""
        self.calls.clear()
        self.instance_patches.clear()
        self.hypervisor_patches.clear()
        self.gets.clear()

    # -- Instances ------------------------------------------------------------------------

    def add_instance(self, name: str, status: dict[str, Any] | None = None) -> None:
        self.instances[(NAMESPACE, name)] = {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"flavor": "m1.tiny", "image": "tiny"},
            "status": copy.deepcopy(status or {}),
        }

    def list_instance_uids(self) -> set[str]:
        """The uids of the Instances that carry one (``metadata.uid``)."""
        self.calls["list_instance_uids"] += 1
        return {
            obj["metadata"]["uid"]
            for obj in self.instances.values()
            if obj["metadata"].get("uid") is not None
        }

    def status_of(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.instances[(NAMESPACE, name)]["status"]
        return status

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls["get_instance"] += 1
        return copy.deepcopy(self.instances.get((namespace, name)))

    def patch_instance_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        self.calls["patch_instance_status"] += 1
        obj = self.instances.get((namespace, name))
        if obj is None:
            return False
        self.instance_patches.append((name, copy.deepcopy(status)))
        merge_patch(obj.setdefault("status", {}), status)
        return True

    def post_event(
        self, obj: dict[str, Any], *, reason: str, message: str, type_: str = "Warning"
    ) -> None:
        self.calls["post_event"] += 1
        self.events.append((obj["metadata"]["name"], reason, message, type_))

    def apply_instance_action(self, namespace: str, body: dict[str, Any]) -> bool:
        self.calls["apply_instance_action"] += 1
        self.instance_actions[(namespace, body["metadata"]["name"])] = copy.deepcopy(body)
        return True

    # -- Hypervisors ----------------------------------------------------------------------

    def add_hypervisor(self, host: str, labels: dict[str, str] | None = None) -> None:
        """A Hypervisor object as the conductor creates one, without counting a call."""
        self.hypervisors[host] = {
            "metadata": {"name": host, "labels": dict(labels or {})},
            "spec": {"disabled": False},
            "status": {},
        }

    def get_hypervisor(self, host: str) -> dict[str, Any] | None:
        self.calls["get_hypervisor"] += 1
        return copy.deepcopy(self.hypervisors.get(host))

    def list_hypervisors(self) -> list[dict[str, Any]]:
        self.calls["list_hypervisors"] += 1
        return [copy.deepcopy(obj) for obj in self.hypervisors.values()]

    def ensure_hypervisor(self, host: str, labels: dict[str, str]) -> dict[str, Any]:
        self.calls["ensure_hypervisor"] += 1
        if host not in self.hypervisors:
            self.add_hypervisor(host, labels)
        return copy.deepcopy(self.hypervisors[host])

    def patch_hypervisor_status(self, host: str, status: dict[str, Any]) -> bool:
        self.calls["patch_hypervisor_status"] += 1
        if host in self.failing:
            raise k8s_exceptions.ApiException(status=500, reason="Internal Server Error")
        if host not in self.hypervisors:
            return False  # 404, as the client answers it
        self.hypervisor_patches.append((host, copy.deepcopy(status)))
        merge_patch(self.hypervisors[host].setdefault("status", {}), status)
        return True

    # -- ServerGroups ---------------------------------------------------------------------

    def add_server_group(self, namespace: str, name: str) -> None:
        self.server_groups[(namespace, name)] = {"metadata": {"name": name}, "status": {}}

    def get_server_group(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls["get_server_group"] += 1
        return copy.deepcopy(self.server_groups.get((namespace, name)))

    def patch_server_group_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        self.calls["patch_server_group_status"] += 1
        obj = self.server_groups.get((namespace, name))
        if obj is None:
            return False
        merge_patch(obj["status"], status)
        return True

    # -- Flavors and Images ---------------------------------------------------------------

    def get_flavor(self, name: str) -> dict[str, Any] | None:
        self.calls["get_flavor"] += 1
        self.gets.append(("flavor", name))
        return self.flavors.get(name)

    def get_image(self, name: str) -> dict[str, Any] | None:
        self.calls["get_image"] += 1
        self.gets.append(("image", name))
        return self.images.get(name)
