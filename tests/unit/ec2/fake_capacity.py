"""The fake cluster's hosts and quotas: Hypervisors with the status the conductor writes, and
the kube-apiserver's quota admission refusing an Instance past a ResourceQuota."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.conductor import hypervisor_status
from kubenova.db import api as db_api

#: The object-count quota on Instances, as a ResourceQuota's spec.hard names it.
INSTANCE_COUNT = "count/instances.compute.kubenova.io"


def exceeded_quota(name: str, quota: dict[str, Any]) -> k8s_exceptions.ApiException:
    """The kube-apiserver's quota admission refusing one more Instance: 403 Forbidden with
    the Status it answers."""
    hard, used = quota["spec"]["hard"][INSTANCE_COUNT], quota["status"]["used"][INSTANCE_COUNT]
    message = (
        f'instances.compute.kubenova.io "{name}" is forbidden: exceeded quota: '
        f"{quota['metadata']['name']}, requested: {INSTANCE_COUNT}=1, "
        f"used: {INSTANCE_COUNT}={used}, limited: {INSTANCE_COUNT}={hard}"
    )
    refused = k8s_exceptions.ApiException(status=403, reason="Forbidden")
    refused.body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "Forbidden",
            "details": {"name": name, "group": "compute.kubenova.io", "kind": "instances"},
            "code": 403,
        }
    )
    return refused


def hypervisor(
    name: str,
    *,
    up: bool = True,
    zone: str | None = None,
    vcpus: int = 8,
    memory_mib: int = 65536,
    disk_gib: int = 1000,
    used: tuple[int, int, int] = (0, 0, 0),
    disabled: bool = False,
) -> dict[str, Any]:
    """A Hypervisor with the status the conductor writes for its compute node (its own
    ``reported_status``; a down host as its periodic check leaves it), allocation ratios
    and reservations at the operator's defaults."""
    node = db_api.ReportedNode(
        uuid=str(uuid.uuid4()),
        vcpus=vcpus,
        vcpus_used=used[0],
        memory_mib=memory_mib,
        memory_mib_used=used[1],
        local_gb=disk_gib,
        local_gb_used=used[2],
        cpu_allocation_ratio=4.0,
        ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0,
        reserved_host_memory_mib=512,
        reserved_host_disk_gib=0,
        hypervisor_type="QEMU",
        hypervisor_version="8.2.2",
        libvirt_version="10.0.0",
        virt_type="kvm",
        cpu_arch="x86_64",
        running_vms=0,
        disabled=disabled,
        disabled_reason="maintenance" if disabled else None,
    )
    status = hypervisor_status.reported_status(node, datetime.datetime.now(datetime.UTC))
    if not up:
        status["state"] = "down"
        del status["runningInstances"]
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "Hypervisor",
        "metadata": {"name": name, "uid": str(uuid.uuid4()), "labels": labels},
        "spec": {"disabled": disabled},
        "status": status,
    }
