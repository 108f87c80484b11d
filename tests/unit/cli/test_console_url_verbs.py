"""kubectl nova vnc/spice NAME --url: the console URL on stdout, its expiry on stderr, and
the kube-apiserver's refusals in kubectl's words."""

import json

import pytest
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import kube, kubectl_nova
from tests.unit.cli import helpers

URL = "https://console.example:6080/vnc.html?token=t0k&instance=uid-1"
FORBIDDEN = k8s_exceptions.ApiException(
    status=403,
    reason="Forbidden",
    body=json.dumps(
        {
            "kind": "Status",
            "reason": "Forbidden",
            "message": 'instances.subresources.compute.kubenova.io "web-1" is forbidden: User'
            ' "bob" cannot create resource "instances/consoleurl"',
        }
    ),
)


@pytest.fixture
def asked(monkeypatch):
    calls: list[tuple[str, str, str]] = []

    def create_console_url(cluster, name, console_type):
        calls.append((cluster.namespace, name, console_type))
        if name == "locked":
            raise FORBIDDEN
        return {"url": URL, "expires": "2026-12-06T22:10:00Z", "type": console_type}

    monkeypatch.setattr(kube, "connect", lambda k, c, n: helpers.cluster(n or "default"))
    monkeypatch.setattr(kube, "create_console_url", create_console_url)
    return calls


@pytest.mark.parametrize(("verb", "console_type"), [("vnc", "novnc"), ("spice", "spice-html5")])
def test_url_prints_the_url_alone_on_stdout_and_the_expiry_on_stderr(
    asked, capsys, verb, console_type
):
    assert kubectl_nova.main([verb, "web-1", "--url", "-n", "prod"]) == 0

    out, err = capsys.readouterr()
    assert out == URL + "\n"
    assert "2026-12-06T22:10:00Z" in err
    assert asked == [("prod", "web-1", console_type)]


def test_without_url_spice_says_what_it_needs_and_asks_nothing(asked, capsys):
    assert kubectl_nova.main(["spice", "web-1"]) == 1

    assert "needs --url" in capsys.readouterr().err
    assert asked == []


def test_a_user_rbac_refuses_gets_the_kube_apiservers_words(asked, capsys):
    assert kubectl_nova.main(["vnc", "locked", "--url"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("Error from server (Forbidden): ")
    assert 'cannot create resource "instances/consoleurl"' in err


def test_the_request_posts_the_consoleurl_subresource_of_the_instance():
    sent: list[tuple[str, str, object]] = []

    class Reply:
        status = 201

        def read(self):
            return json.dumps({"url": URL}).encode()

    class Api(k8s_client.ApiClient):
        def call_api(
            self,
            method,
            url,
            header_params=None,
            body=None,
            post_params=None,
            _request_timeout=None,
        ):
            sent.append((method, url, body))
            return Reply()

    api = Api(k8s_client.Configuration(host="https://127.0.0.1:6443"))
    cluster = kube.Cluster(api=api, namespace="prod")

    assert kube.create_console_url(cluster, "web-1", "spice-html5") == {"url": URL}
    assert sent == [
        (
            "POST",
            "https://127.0.0.1:6443/apis/subresources.compute.kubenova.io/v1/namespaces/prod"
            "/instances/web-1/consoleurl?type=spice-html5",
            {},
        )
    ]
