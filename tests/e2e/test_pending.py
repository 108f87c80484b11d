"""An instance that cannot be placed stays Pending and says why, then proceeds when it can."""

from __future__ import annotations

import uuid

import pytest
import yaml

from tests.e2e.conftest import apply, flavor_manifest, get, instance_manifest, kubectl, wait_for

pytestmark = pytest.mark.e2e


def _scheduled(namespace: str, name: str) -> dict:
    status = (get("instances", name, namespace) or {}).get("status") or {}
    for condition in status.get("conditions") or []:
        if condition["type"] == "Scheduled":
            return dict(condition, phase=status.get("phase"))
    return {}


FINALIZER = "compute.kubenova.io/instance-protection"
KOPF_DIFF_BASE = "kopf.zalando.org/last-handled-configuration"


def test_missing_flavor_leaves_the_instance_pending_until_the_flavor_appears(namespace):
    flavor = f"e2e-late-{uuid.uuid4().hex[:6]}"
    created = yaml.safe_load(
        kubectl(
            "create",
            "-o",
            "yaml",
            "-f",
            "-",
            stdin=yaml.safe_dump(instance_manifest("late", namespace, flavor)),
        ).stdout
    )
    # The admission policy (crds/admission-instance-protection.yaml) adds the finalizer in
    # the create itself, so the operator has nothing to patch in before it works.
    assert FINALIZER in created["metadata"].get("finalizers", [])
    condition = wait_for(
        "Scheduled=False naming the flavor",
        lambda: (c := _scheduled(namespace, "late")).get("status") == "False" and c,
        timeout=60,
    )
    assert condition["phase"] == "Pending"
    assert condition["reason"] == "FlavorNotFound"
    assert flavor in condition["message"]
    assert "spec.flavor" in condition["message"]

    apply(flavor_manifest(flavor, 1, 128, 1))
    wait_for(
        "the instance to be scheduled once its flavor exists",
        lambda: _scheduled(namespace, "late").get("status") == "True",
        timeout=60,
    )
    # The operator derives what it handled from the status; it keeps no copy of the spec
    # in an annotation of the Instance.
    annotations = (get("instances", "late", namespace) or {})["metadata"].get("annotations", {})
    assert KOPF_DIFF_BASE not in annotations
    kubectl("delete", "instance", "late", "-n", namespace, "--timeout=90s")
    assert get("instances", "late", namespace) is None
    kubectl("delete", "flavor", flavor)


def test_instance_larger_than_every_host_is_pending_with_the_rejections_counted(namespace):
    flavor = f"e2e-huge-{uuid.uuid4().hex[:6]}"
    apply(flavor_manifest(flavor, 1, 4_000_000, 1))
    apply(instance_manifest("huge", namespace, flavor))
    condition = wait_for(
        "Scheduled=False with NoValidHost",
        lambda: (c := _scheduled(namespace, "huge")).get("reason") == "NoValidHost" and c,
        timeout=60,
    )
    assert condition["status"] == "False"
    assert condition["phase"] == "Pending"
    assert "insufficient memory" in condition["message"]
    assert condition["message"].startswith("0/")

    def no_valid_host_events():
        events = yaml.safe_load(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
        return [
            event
            for event in events["items"]
            if event["involvedObject"]["name"] == "huge" and event["reason"] == "NoValidHost"
        ]

    events = wait_for("a NoValidHost Event", no_valid_host_events, timeout=30)
    assert "insufficient memory" in events[0]["message"]
    assert events[0]["type"] == "Warning"
    kubectl("delete", "instance", "huge", "-n", namespace, "--timeout=60s")
    kubectl("delete", "flavor", flavor)
