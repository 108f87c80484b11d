"""A reference to a name no object can have (a spec naming the Flavor "%s%n", say) is a
reference to nothing: the client answers None without asking, where the apiserver would
answer 400 and the handler fail on every retry."""

from __future__ import annotations

from typing import Any

import pytest

from kubenova.k8s import client


class _RefusingApi:
    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    def get_cluster_custom_object(self, *args: Any) -> dict[str, Any]:
        self.asked.append(args)
        return {"metadata": {"name": args[-1]}}

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.asked.append(args)
        return {"metadata": {"name": args[-1]}}


@pytest.fixture
def kube() -> client.KubeClient:
    kube = client.KubeClient.__new__(client.KubeClient)
    kube._custom = _RefusingApi()  # type: ignore[assignment]
    return kube


@pytest.mark.parametrize("name", ["%s%s%s%n%x", "a/b", ".", "..", ""])
def test_a_name_no_object_can_have_is_found_nowhere_without_asking(kube, name):
    assert kube.get_flavor(name) is None
    assert kube.get_image(name) is None
    assert kube.get_server_group("team-a", name) is None
    assert kube._custom.asked == []


@pytest.mark.parametrize("name", ["m1.small", "tiny", "UPPER", "$(reboot)", "\u00e9t\u00e9"])
def test_any_other_name_is_asked_for(kube, name):
    assert kube.get_flavor(name) == {"metadata": {"name": name}}
    assert kube.get_server_group("team-a", name) == {"metadata": {"name": name}}
    assert len(kube._custom.asked) == 2
