"""The API server refuses bad input with a message that names the field."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import apply, flavor_manifest, get, instance_manifest

pytestmark = pytest.mark.e2e


def _refused(manifest: dict) -> str:
    result = apply(manifest, check=False)
    assert result.returncode != 0, f"accepted: {manifest}"
    return result.stderr


def test_negative_vcpus_is_refused_naming_vcpus(stack):
    message = _refused(flavor_manifest("e2e-bad-vcpus", -1, 128, 1))
    assert "spec.vcpus" in message
    assert get("flavors", "e2e-bad-vcpus") is None


def test_instance_without_a_flavor_is_refused_naming_flavor(namespace):
    manifest = instance_manifest("noflavor", namespace, "x")
    del manifest["spec"]["flavor"]
    message = _refused(manifest)
    assert "spec.flavor" in message
    assert "Required value" in message


def test_user_data_over_64_kib_is_refused_naming_user_data(namespace):
    manifest = instance_manifest("bigdata", namespace, "m1.nano", userData="x" * (64 * 1024 + 1))
    message = _refused(manifest)
    assert "spec.userData" in message
    assert get("instances", "bigdata", namespace) is None


def test_malformed_sha256_is_refused_naming_sha256(stack):
    manifest = {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "Image",
        "metadata": {"name": "e2e-bad-sha"},
        "spec": {
            "source": {"url": "http://127.0.0.1:8089/x.qcow2"},
            "sha256": "not-a-digest",
            "diskFormat": "qcow2",
        },
    }
    message = _refused(manifest)
    assert "spec.sha256" in message


def test_a_resize_confirmation_without_its_stamp_is_refused_and_keeps_the_spec(namespace):
    apply(instance_manifest("fixed", namespace, "e2e-never-created-a"))
    message = _refused(
        instance_manifest("fixed", namespace, "e2e-never-created-a", confirmResize={})
    )
    assert "spec.confirmResize.requestedAt" in message
    assert "confirmResize" not in get("instances", "fixed", namespace)["spec"]


def test_changing_an_instances_server_group_is_refused_and_keeps_the_old_one(namespace):
    apply(instance_manifest("grouped", namespace, "m1.nano", serverGroup="e2e-group-a"))
    message = _refused(
        instance_manifest("grouped", namespace, "m1.nano", serverGroup="e2e-group-b")
    )
    assert "spec.serverGroup" in message
    assert "serverGroup is immutable" in message
    assert get("instances", "grouped", namespace)["spec"]["serverGroup"] == "e2e-group-a"


def test_putting_an_instance_into_a_server_group_after_create_is_refused(namespace):
    # As in Nova, a server joins a group when it is created or never.
    apply(instance_manifest("loner", namespace, "m1.nano"))
    message = _refused(instance_manifest("loner", namespace, "m1.nano", serverGroup="e2e-group-a"))
    assert "spec.serverGroup" in message
    assert "serverGroup is immutable" in message
    assert "serverGroup" not in get("instances", "loner", namespace)["spec"]


def test_taking_an_instance_out_of_its_server_group_is_refused(namespace):
    apply(instance_manifest("member", namespace, "m1.nano", serverGroup="e2e-group-a"))
    # kubectl apply drops a field the last applied manifest had and this one lacks.
    message = _refused(instance_manifest("member", namespace, "m1.nano"))
    assert "spec.serverGroup" in message
    assert "serverGroup is immutable" in message
    assert get("instances", "member", namespace)["spec"]["serverGroup"] == "e2e-group-a"
