"""Which answer each request path asks for."""

from __future__ import annotations

import pytest

from kubenova.subresources import routes, status

BASE = "/apis/subresources.compute.kubenova.io/v1"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez", "/readyz/ping", "/healthz/"])
def test_health_checks_are_routed_to_health(path: str) -> None:
    assert routes.resolve(path).kind is routes.Kind.HEALTH


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/apis", routes.Kind.GROUP_LIST),
        ("/apis/", routes.Kind.GROUP_LIST),
        ("/apis/subresources.compute.kubenova.io", routes.Kind.GROUP),
        (BASE, routes.Kind.RESOURCE_LIST),
        (BASE + "/", routes.Kind.RESOURCE_LIST),
    ],
)
def test_discovery_paths_are_routed_to_their_document(path: str, kind: routes.Kind) -> None:
    assert routes.resolve(path).kind is kind


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/openapi/v2", routes.Kind.OPENAPI_V2), ("/openapi/v3", routes.Kind.OPENAPI_V3)],
)
def test_the_openapi_documents_the_aggregator_fetches_are_routed(
    path: str, kind: routes.Kind
) -> None:
    assert routes.resolve(path).kind is kind


def test_a_subresource_path_names_namespace_instance_subresource_and_query() -> None:
    route = routes.resolve(f"{BASE}/namespaces/demo/instances/web-1/consoleurl?type=spice-html5")

    assert (route.kind, route.namespace, route.name, route.subresource) == (
        routes.Kind.SUBRESOURCE,
        "demo",
        "web-1",
        "consoleurl",
    )
    assert route.param("type") == "spice-html5"
    assert route.param("absent") is None
    assert route.methods == ("POST",)


@pytest.mark.parametrize("sub", ["vnc", "console", "consolelog"])
def test_the_streaming_subresources_answer_get(sub: str) -> None:
    route = routes.resolve(f"{BASE}/namespaces/demo/instances/web-1/{sub}")
    assert route.methods == ("GET",)


def test_an_unknown_subresource_is_not_found_and_the_known_ones_are_listed() -> None:
    with pytest.raises(status.ApiError) as refused:
        routes.resolve(f"{BASE}/namespaces/demo/instances/web-1/screenshot")

    assert refused.value.code == 404
    assert "instances/screenshot" in refused.value.message
    assert "consoleurl" in refused.value.message


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/openapi/v3/apis/other.example.com/v1",
        "/apis/other.example.com/v1",
        f"{BASE}/namespaces/demo/instances/web-1",
        f"{BASE}/namespaces/demo/flavors/small/consoleurl",
        f"{BASE}/namespaces//instances/web-1/consoleurl",
        "/apis/subresources.compute.kubenova.io/v2/namespaces/demo/instances/web-1/vnc",
    ],
)
def test_any_other_path_is_not_found(path: str) -> None:
    with pytest.raises(status.ApiError) as refused:
        routes.resolve(path)
    assert refused.value.code == 404
