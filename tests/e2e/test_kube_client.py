"""The operator's Kubernetes client against the real kube-apiserver: status writes.

Status writes skip decoding the reply (see ``KubeClient._patch_status``), so these tests make
sure that what they report is still what the apiserver did.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s import resources
from kubenova.k8s.client import KubeClient
from tests.e2e.conftest import api_configuration, get, kubectl

pytestmark = pytest.mark.e2e


@pytest.fixture
def kube() -> KubeClient:
    configuration = api_configuration()
    return KubeClient(k8s_client.ApiClient(configuration))


@pytest.fixture
def hypervisor() -> Iterator[str]:
    """A Hypervisor object no agent and no database record stands behind."""
    name = f"kube-client-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": resources.API_VERSION,
        "kind": "Hypervisor",
        "metadata": {"name": name},
        "spec": {"disabled": False},
    }
    kubectl("create", "-f", "-", stdin=json.dumps(body))
    try:
        yield name
    finally:
        kubectl("delete", "hypervisor", name, "--wait=false", check=False)


def test_a_status_write_merges_into_the_status_and_leaves_other_fields(
    kube: KubeClient, hypervisor: str
) -> None:
    assert kube.patch_hypervisor_status(hypervisor, {"state": "up", "virtType": "qemu"})
    assert kube.patch_hypervisor_status(hypervisor, {"state": "down"})

    status = (get("hypervisors", hypervisor) or {}).get("status")
    assert status == {"state": "down", "virtType": "qemu"}


def test_a_status_write_to_an_object_that_is_gone_says_so(kube: KubeClient) -> None:
    missing = f"gone-{uuid.uuid4().hex[:8]}"
    assert kube.patch_hypervisor_status(missing, {"state": "up"}) is False
    assert kube.patch_instance_status("default", missing, {"phase": "Pending"}) is False


def test_a_refused_status_write_raises_with_the_apiservers_reason(
    kube: KubeClient, hypervisor: str
) -> None:
    with pytest.raises(k8s_exceptions.ApiException) as refused:
        kube.patch_hypervisor_status(hypervisor, {"state": "sideways"})

    assert refused.value.status == 422
    assert "status.state" in (refused.value.body or "")
    assert "sideways" in (refused.value.body or "")
    assert (get("hypervisors", hypervisor) or {}).get("status") in (None, {})
