"""The EC2 API's kube-apiserver calls (kubenova.ec2.cluster.Cluster) on what the apiserver
answers besides success: an object gone is None (a delete: False), another object of the name
is False for a delete guarded by uid, and any other refusal is raised as it came."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import cluster


class _Refusing:
    """Every API method raises an ApiException of ``status`` and records its keyword args."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.api_client = k8s_client.ApiClient()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            raise k8s_exceptions.ApiException(status=self.status, reason="refused")

        return call


def _cluster(status: int) -> tuple[cluster.Cluster, _Refusing]:
    refusing = _Refusing(status)
    made = cluster.Cluster(k8s_client.ApiClient())
    made._custom = refusing  # type: ignore[assignment]
    made._core = refusing  # type: ignore[assignment]
    return made, refusing


READS = [
    ("flavor", ("m1.tiny",)),
    ("instance", ("team-a", "web-1")),
    ("patch_instance", ("team-a", "web-1", {"metadata": {}})),
    ("patch_secret", ("team-a", "key", {"metadata": {}})),
    ("config_map", ("team-a", "tags")),
    ("patch_config_map", ("team-a", "tags", {"data": {}})),
]
DELETES = [
    ("delete_instance", ("team-a", "web-1", "uid-1")),
    ("delete_secret", ("team-a", "key", "uid-1")),
]


@pytest.mark.parametrize(("method", "args"), READS)
def test_an_object_gone_is_none(method, args):
    made, _ = _cluster(404)
    assert getattr(made, method)(*args) is None


@pytest.mark.parametrize(("method", "args"), READS + DELETES)
def test_other_refusals_are_raised(method, args):
    made, _ = _cluster(500)
    with pytest.raises(k8s_exceptions.ApiException) as raised:
        getattr(made, method)(*args)
    assert raised.value.status == 500


@pytest.mark.parametrize(("method", "args"), DELETES)
@pytest.mark.parametrize("status", [404, 409])
def test_a_delete_of_an_object_gone_or_replaced_is_false(method, args, status):
    made, refusing = _cluster(status)
    assert getattr(made, method)(*args) is False
    [(_, kwargs)] = refusing.calls
    # Guarded by the uid: a new object made under the name since is never deleted.
    assert kwargs["body"].preconditions.uid == "uid-1"


def test_a_409_of_a_read_is_raised_not_taken_for_gone():
    made, _ = _cluster(409)
    with pytest.raises(k8s_exceptions.ApiException):
        made.patch_secret("team-a", "key", {"metadata": {"resourceVersion": "1"}})
