"""CRDs and admission policies: templates that render exactly what crds/ holds."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.unit.chart.chartlib import ROOT

SOURCES = sorted((ROOT / "crds").glob("*.yaml"))
CHART_ADDITIONS = ("labels", "annotations")


def _source_objects():
    for path in SOURCES:
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def _without_chart_metadata(obj):
    obj = copy.deepcopy(obj)
    for key in CHART_ADDITIONS:
        obj["metadata"].pop(key, None)
    return obj


def test_should_render_every_object_of_crds_unchanged_but_for_labels(any_helm) -> None:
    result = any_helm.template(None)
    assert result.returncode == 0, result.stderr
    rendered = {
        (obj["kind"], obj["metadata"]["name"]): obj
        for obj in yaml.safe_load_all(result.stdout)
        if obj
    }
    for source in _source_objects():
        key = (source["kind"], source["metadata"]["name"])
        assert key in rendered, f"{key} from crds/ is not rendered"
        assert _without_chart_metadata(rendered[key]) == source, key
        assert rendered[key]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubenova"


def test_should_keep_crds_on_uninstall_by_default(render) -> None:
    for crd in render().of_kind("CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for crd in render({"crds": {"keep": False}}).of_kind("CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]


def test_should_leave_crds_out_when_they_are_managed_apart(render) -> None:
    rendered = render({"crds": {"enabled": False}})
    assert rendered.of_kind("CustomResourceDefinition") == []
    # The admission policies are not CRDs; they stay.
    assert rendered.of_kind("ValidatingAdmissionPolicy")


def test_should_refuse_an_uninstall_while_instances_exist_when_crds_go_with_it(render) -> None:
    kept = render()
    assert kept.find("Job", "kubenova-uninstall-check") is None
    rendered = render({"crds": {"keep": False}})
    job = rendered.get("Job", "kubenova-uninstall-check")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert job["spec"]["backoffLimit"] == 0
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "list_cluster_custom_object" in script
    assert "sys.exit(" in script
    role = rendered.get("ClusterRole", "kubenova-uninstall-check")
    assert role["rules"] == [
        {"apiGroups": ["compute.kubenova.io"], "resources": ["instances"], "verbs": ["list"]}
    ]
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        hook = rendered.get(kind, "kubenova-uninstall-check")["metadata"]["annotations"]
        assert (hook["helm.sh/hook"], hook["helm.sh/hook-weight"]) == ("pre-delete", "-10")


def test_should_render_the_forced_host_policy_unless_turned_off(render) -> None:
    assert render().find("ValidatingAdmissionPolicy", "kubenova-forced-host-admin-only")
    off = render({"admissionPolicies": {"forcedHostAdminOnly": False}})
    assert off.of_kind("ValidatingAdmissionPolicy") == []
    assert off.of_kind("ValidatingAdmissionPolicyBinding") == []


@pytest.mark.parametrize(("kube", "expected"), [("1.35.4", False), ("1.36.0", True)])
def test_should_render_the_mutating_policy_only_where_it_is_ga(render, kube, expected) -> None:
    rendered = render(None, "--kube-version", kube)
    assert (
        bool(rendered.find("MutatingAdmissionPolicy", "kubenova-instance-protection")) is expected
    )
    assert bool(rendered.of_kind("MutatingAdmissionPolicyBinding")) is expected
