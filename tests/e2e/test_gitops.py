"""examples/gitops converges from one `kubectl apply -k`: its instances become Ready as
`kubectl wait` and Argo CD's health check see them, and `kubectl delete -k` takes their
domains away."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import HOST, ROOT, domain_exists, get, kubectl, wait_for
from tests.unit.gitops.test_argocd_health import argocd_health

pytestmark = pytest.mark.e2e

EXAMPLE = str(ROOT / "examples" / "gitops")
NAMESPACE = "gitops-demo"
INSTANCES = ["gitops-vm1", "gitops-vm2"]


def _delete_example(*flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kubectl("delete", "-k", EXAMPLE, *flags, check=check)


@pytest.fixture
def example(stack: dict[str, str]) -> Iterator[str]:
    """The example's folder, with nothing of it on the cluster before or after the test."""
    _delete_example("--ignore-not-found", "--wait", "--timeout=100s", check=False)
    yield EXAMPLE
    _delete_example("--ignore-not-found", "--wait", "--timeout=100s", check=False)


def test_gitops_example_converges_from_one_apply_and_its_delete_removes_the_domains(example):
    kubectl("apply", "-k", example)
    for name in INSTANCES:
        kubectl(
            "wait", "--for=condition=Ready", f"instance/{name}", "-n", NAMESPACE, "--timeout=110s"
        )

    live = json.loads(kubectl("get", "instances", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    assert sorted(obj["metadata"]["name"] for obj in live) == INSTANCES
    for obj in live:
        health = argocd_health(obj)
        assert health["status"] == "Healthy", (obj["metadata"]["name"], health)
        assert health["message"].startswith(f"Running on host {HOST}"), health
    instance_uuids = [obj["metadata"]["uid"] for obj in live]
    assert all(domain_exists(instance_uuid) for instance_uuid in instance_uuids)

    _delete_example("--wait", "--timeout=100s")
    wait_for(
        "the domains to be gone",
        lambda: not any(domain_exists(instance_uuid) for instance_uuid in instance_uuids),
        timeout=30,
    )
    assert get("namespace", NAMESPACE) is None
    assert get("flavor", "gitops.nano") is None
    assert get("flavor", "gitops.micro") is None
