"""Kubernetes Events about an Instance (``kubectl describe instance`` and ``kubectl get
events`` show them): why an operation was refused or failed, or what Kubenova did by itself."""

from __future__ import annotations

from kubenova.db import models
from kubenova.k8s import resources
from kubenova.k8s.client import KubeClient


def post_instance_event(
    kube: KubeClient,
    record: models.Instance,
    reason: str,
    message: str,
    *,
    type_: str = "Warning",
) -> None:
    kube.post_event(
        {
            "apiVersion": resources.API_VERSION,
            "kind": "Instance",
            "metadata": {"name": record.name, "namespace": record.namespace, "uid": record.uuid},
        },
        reason=reason,
        message=message,
        type_=type_,
    )
