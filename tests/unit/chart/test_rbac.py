"""Least privilege: one ServiceAccount per component, and each verb written out."""

from __future__ import annotations

from tests.unit.chart.chartlib import NAMESPACE

OPERATOR = "kubenova-operator"


def _rules(role):
    return {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_should_give_each_component_its_own_service_account(render) -> None:
    rendered = render()
    accounts = {sa["metadata"]["name"] for sa in rendered.of_kind("ServiceAccount")}
    for kind in ("Deployment", "DaemonSet", "StatefulSet"):
        for owner in rendered.of_kind(kind):
            name = owner["metadata"]["name"]
            assert owner["spec"]["template"]["spec"]["serviceAccountName"] == name
            assert name in accounts
    assert len(accounts) == 8


def test_should_grant_the_operator_each_verb_it_uses_and_nothing_more(render) -> None:
    rendered = render()
    cluster = _rules(rendered.get("ClusterRole", OPERATOR))
    group = "compute.kubenova.io"
    assert cluster == {
        (group, "instances"): ["get", "list", "patch", "watch"],
        (group, "instances/status"): ["patch"],
        (group, "hypervisors"): ["create", "get", "list", "patch", "watch"],
        (group, "hypervisors/status"): ["patch"],
        (group, "flavors"): ["get", "list", "watch"],
        (group, "images"): ["create", "get", "list", "watch"],
        (group, "instancesnapshots"): ["get", "list", "watch"],
        (group, "instancesnapshots/status"): ["patch"],
        (group, "instancemigrations"): ["get", "list", "patch", "watch"],
        (group, "instancemigrations/status"): ["patch"],
        (group, "servergroups"): ["get"],
        (group, "servergroups/status"): ["patch"],
        (group, "instanceactions"): ["create", "patch"],
        ("", "events"): ["create"],
        ("apiextensions.k8s.io", "customresourcedefinitions"): ["list", "watch"],
        ("", "namespaces"): ["list", "watch"],
        ("authentication.k8s.io", "tokenreviews"): ["create"],
        ("", "nodes"): ["get", "list", "watch"],  # get: a node's addresses, for its certificate
        ("apiregistration.k8s.io", "apiservices"): ["get", "patch"],
    }
    namespaced = rendered.get("Role", OPERATOR)
    assert namespaced["metadata"]["namespace"] == NAMESPACE
    assert _rules(namespaced) == {
        ("coordination.k8s.io", "leases"): ["create", "get", "update"],
        ("", "secrets"): ["create", "delete", "get", "list", "update"],
        ("", "configmaps"): ["create", "get", "update"],
    }


def test_should_never_grant_a_wildcard(render) -> None:
    for kind in ("ClusterRole", "Role"):
        for role in render({"crds": {"keep": False}}).of_kind(kind):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], (role["metadata"]["name"], rule)


def test_should_bind_the_operator_roles_to_the_operator_only(render) -> None:
    off = {"enabled": False}
    rendered = render({"console": off, "subresources": off})
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        (binding,) = rendered.of_kind(kind)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}
        ]


def test_should_give_the_agent_libvirt_and_the_servers_no_api_token(render) -> None:
    rendered = render()
    for name in ("agent", "libvirt", "mariadb", "rabbitmq", "image-server"):
        account = rendered.get("ServiceAccount", f"kubenova-{name}")
        assert account["automountServiceAccountToken"] is False
    for kind in ("DaemonSet", "StatefulSet"):
        for owner in rendered.of_kind(kind):
            assert owner["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
