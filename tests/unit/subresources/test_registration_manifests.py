"""The objects that register the server with the kube-apiserver and grant consoles."""

from __future__ import annotations

import base64

from kubenova.subresources import manifests


def test_the_apiservice_names_the_group_version_its_service_and_the_ca() -> None:
    obj = manifests.apiservice("kubenova", b"-----BEGIN CERTIFICATE-----\n")

    assert obj["metadata"]["name"] == "v1.subresources.compute.kubenova.io"
    spec = obj["spec"]
    assert (spec["group"], spec["version"]) == ("subresources.compute.kubenova.io", "v1")
    assert spec["service"] == {
        "namespace": "kubenova",
        "name": "kubenova-subresources",
        "port": 443,
    }
    assert base64.b64decode(spec["caBundle"]) == b"-----BEGIN CERTIFICATE-----\n"


def test_a_host_endpoint_is_a_selectorless_service_and_a_slice_with_the_same_port_name() -> None:
    service, endpoints = manifests.host_endpoint("kubenova", "192.0.2.2", 16100)

    assert "selector" not in service["spec"]
    assert service["spec"]["ports"][0]["name"] == endpoints["ports"][0]["name"]
    assert endpoints["ports"][0]["port"] == 16100
    assert (
        endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == service["metadata"]["name"]
    )
    assert endpoints["endpoints"][0]["addresses"] == ["192.0.2.2"]
    assert endpoints["addressType"] == "IPv4"


def test_an_ipv6_host_gets_an_ipv6_slice() -> None:
    _, endpoints = manifests.host_endpoint("kubenova", "2001:db8::2", 16100)
    assert endpoints["addressType"] == "IPv6"


def test_the_console_user_role_grants_each_subresource_its_verb_and_joins_admin_and_edit() -> None:
    role = manifests.console_user_role()

    granted = {rule["resources"][0]: rule["verbs"] for rule in role["rules"]}
    assert granted == {
        "instances/consoleurl": ["create"],
        "instances/vnc": ["get"],
        "instances/console": ["get"],
        "instances/consolelog": ["get"],
    }
    assert {r["apiGroups"][0] for r in role["rules"]} == {"subresources.compute.kubenova.io"}
    assert role["metadata"]["labels"] == {
        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
    }
