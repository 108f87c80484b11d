"""The local cluster is a real one: its node runs pods that find Services by DNS name, a deleted
namespace takes its Instances (and their guests) with it, and ownerReferences are collected."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import (
    HOST,
    STATE,
    apply,
    domain_exists,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    wait_for,
)

pytestmark = pytest.mark.e2e

REGISTRY = os.environ.get("KUBENOVA_REGISTRY", "127.0.0.1:5000")
NODE = os.environ.get("KUBENOVA_NODE_NAME", HOST)


def _toolbox() -> str:
    """busybox, as the last image build tagged it (hack/images/build.sh)."""
    tag = (STATE / "images" / "tag").read_text().strip()
    return f"{REGISTRY}/kubenova/toolbox:{tag}"


def _condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            status: str = condition.get("status")
            return status
    return None


@pytest.fixture
def plain_namespace() -> Any:
    """A namespace for tests that need no Kubenova processes."""
    name = f"e2e-cluster-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_the_node_is_ready_and_labelled_as_a_hypervisor():
    node = get("nodes", NODE)
    assert node is not None, f"no Node {NODE}"
    assert _condition(node, "Ready") == "True"
    assert node["metadata"]["labels"].get("kubenova.io/hypervisor") == "true"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")


def test_an_object_whose_owner_is_deleted_is_garbage_collected(plain_namespace):
    owner = json.loads(
        kubectl("create", "configmap", "owner", "-n", plain_namespace, "-o", "json").stdout
    )
    apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "namespace": plain_namespace,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
        }
    )
    kubectl("delete", "configmap", "owner", "-n", plain_namespace)
    wait_for(
        "the garbage collector to delete the dependent",
        lambda: get("configmap", "dependent", plain_namespace) is None,
        timeout=60,
    )


def test_a_pod_reaches_a_service_by_its_dns_name(plain_namespace):
    toolbox = _toolbox()
    marker = f"served-{uuid.uuid4().hex}"
    labels = {"app": "web"}
    apply(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": plain_namespace},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "httpd",
                                    "image": toolbox,
                                    "command": [
                                        "sh",
                                        "-c",
                                        f"mkdir -p /tmp/www && echo {marker} > /tmp/www/index.html"
                                        " && exec httpd -f -p 8080 -h /tmp/www",
                                    ],
                                    "ports": [{"containerPort": 8080}],
                                    "securityContext": {"runAsUser": 65532},
                                }
                            ]
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": plain_namespace},
                "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        ]
    )
    kubectl("rollout", "status", "deployment/web", "-n", plain_namespace, "--timeout=120s")
    apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": plain_namespace},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": toolbox,
                        # busybox's resolver (nslookup) asks the cluster's DNS for the
                        # Service's name; nc then speaks HTTP to the address it got (Debian's
                        # static busybox wget crashes, even on the host). Retried, as a new
                        # Service's endpoints may take a moment.
                        "command": [
                            "sh",
                            "-c",
                            f"name=web.{plain_namespace}.svc.cluster.local;"
                            " for i in $(seq 30); do"
                            " ip=$(nslookup $name | awk '/^Address: /{a=$2} END{print a}');"
                            ' echo "$name is $ip";'
                            ' [ -n "$ip" ] && printf "GET / HTTP/1.0\\r\\n\\r\\n"'
                            " | nc -w 2 $ip 80 | grep served- && exit 0;"
                            " sleep 1; done; exit 1",
                        ],
                        "securityContext": {"runAsUser": 65532},
                    }
                ],
            },
        }
    )
    phase = wait_for(
        "the client pod to finish",
        lambda: (
            ((get("pod", "client", plain_namespace) or {}).get("status") or {}).get("phase")
            in ("Succeeded", "Failed")
            and get("pod", "client", plain_namespace)["status"]["phase"]
        ),
        timeout=120,
    )
    logs = kubectl("logs", "client", "-n", plain_namespace).stdout
    assert phase == "Succeeded", logs
    assert marker in logs


def test_deleting_a_namespace_deletes_its_instances_and_their_guests(stack):
    name = f"e2e-nsdel-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    apply(flavor_manifest("e2e-nano", 1, 128, 1))
    apply(instance_manifest("vm1", name, "e2e-nano"))
    wait_for(
        "the instance to be Running",
        lambda: (
            ((get("instances", "vm1", name) or {}).get("status") or {}).get("phase") == "Running"
        ),
        timeout=180,
    )
    instance_uuid = get("instances", "vm1", name)["metadata"]["uid"]
    assert domain_exists(instance_uuid)

    kubectl("delete", "namespace", name, "--wait=false")
    wait_for("the namespace to be gone", lambda: get("namespace", name) is None, timeout=180)
    assert not domain_exists(instance_uuid)
