"""Recording fakes of the Kubernetes client and the publisher, and builders of the records
they stand beside, for conductor tests on a real database: objects held in memory, status
patches applied as JSON merge patches, every call counted."""

from __future__ import annotations

import collections
import copy
import datetime as dt
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.conductor.manager import ConductorManager
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.rpc import compute_rpcapi, payloads
from tests.integration.db.helpers import claim, make_instance

NAMESPACE = "default"
LAUNCHED = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


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
    """The KubeClient methods the conductor calls, over objects held in memory."""

    def __init__(self) -> None:
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.hypervisors: dict[str, dict[str, Any]] = {}
        self.server_groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.instance_patches: list[tuple[str, dict[str, Any]]] = []
        self.hypervisor_patches: list[tuple[str, dict[str, Any]]] = []
        # Hosts whose status patch the apiserver fails with a 500.
        self.failing: set[str] = set()

    def clear(self) -> None:
        self.calls.clear()
        self.instance_patches.clear()
        self.hypervisor_patches.clear()

    def add_instance(self, name: str, status: dict[str, Any] | None = None) -> None:
        self.instances[(NAMESPACE, name)] = {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"flavor": "m1.tiny", "image": "tiny"},
            "status": copy.deepcopy(status or {}),
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

    def get_hypervisor(self, host: str) -> dict[str, Any] | None:
        self.calls["get_hypervisor"] += 1
        return copy.deepcopy(self.hypervisors.get(host))

    def list_hypervisors(self) -> list[dict[str, Any]]:
        self.calls["list_hypervisors"] += 1
        return [copy.deepcopy(obj) for obj in self.hypervisors.values()]

    def ensure_hypervisor(self, host: str, labels: dict[str, str]) -> dict[str, Any]:
        self.calls["ensure_hypervisor"] += 1
        if host not in self.hypervisors:
            self.hypervisors[host] = {
                "metadata": {"name": host, "labels": dict(labels)},
                "spec": {"disabled": False},
                "status": {},
            }
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


class RecordingCaster:
    """Stands in for the publisher: records what the conductor casts."""

    def __init__(self) -> None:
        self.casts: list[tuple[str, str]] = []

    def cast(self, topic: str, method: str, args: dict[str, object], request_id: str) -> str:
        self.casts.append((topic, method))
        return "message-id"


def make_conductor(
    session_factory: db_engine.SessionFactory, kube: RecordingKube, caster: RecordingCaster
) -> ConductorManager:
    """A conductor with the default settings over the fakes."""
    compute = compute_rpcapi.ComputeAPI(caster)  # type: ignore[arg-type]
    return ConductorManager(OperatorSettings(), session_factory, kube, compute)  # type: ignore[arg-type]


def node_report(host: str = "h1", **overrides: Any) -> payloads.ComputeNodeReport:
    """A heartbeat of an 8 vCPU, 8 GiB, 100 GiB host labelled with zone az1."""
    values: dict[str, Any] = {
        "host": host,
        "vcpus": 8,
        "memory_mib": 8192,
        "disk_gib": 100,
        "cpu_arch": "x86_64",
        "hypervisor_type": "QEMU",
        "virt_type": "qemu",
        "libvirt_version": "9.0.0",
        "qemu_version": "7.2.0",
        "labels": {"topology.kubernetes.io/zone": "az1"},
    }
    values.update(overrides)
    return payloads.ComputeNodeReport(**values)


def instance_name(uuid: str) -> str:
    """The object name ``make_instance`` gives the record with this uuid."""
    return f"vm-{uuid[:8]}"


def running_instance(
    session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    host: str = "h1",
    *,
    status: dict[str, Any] | None = None,
) -> str:
    """An instance running on ``host``, recorded and present in Kubernetes with ``status``."""
    uuid = make_instance(session_factory)
    assert claim(session_factory, uuid, host)
    with db_engine.transaction(session_factory) as session:
        db_api.instance_update(
            session,
            uuid,
            vm_state="active",
            task_state=None,
            power_state="running",
            addresses=["192.168.122.10"],
            launched_at=LAUNCHED,
        )
    kube.add_instance(instance_name(uuid), status)
    return uuid
