"""The discovery documents the kube-aggregator reads."""

from __future__ import annotations

from kubenova.subresources import discovery


def test_the_resource_list_names_the_four_instance_subresources_with_their_verbs() -> None:
    document = discovery.resource_list()

    assert document["kind"] == "APIResourceList"
    assert document["groupVersion"] == "subresources.compute.kubenova.io/v1"
    verbs = {r["name"]: r["verbs"] for r in document["resources"]}
    assert verbs == {
        "instances/consoleurl": ["create"],
        "instances/vnc": ["get"],
        "instances/console": ["get"],
        "instances/consolelog": ["get"],
    }
    assert all(r["namespaced"] for r in document["resources"])


def test_the_group_prefers_its_one_version() -> None:
    group = discovery.group()

    assert group["name"] == "subresources.compute.kubenova.io"
    assert group["preferredVersion"] == {
        "groupVersion": "subresources.compute.kubenova.io/v1",
        "version": "v1",
    }


def test_the_group_list_holds_the_group_without_its_own_kind() -> None:
    listed = discovery.group_list()

    assert listed["kind"] == "APIGroupList"
    assert [g["name"] for g in listed["groups"]] == ["subresources.compute.kubenova.io"]
    assert "kind" not in listed["groups"][0]
