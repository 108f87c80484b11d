"""The server over real TLS on loopback: who gets past the front-proxy check, and how each
answer looks on the wire."""

from __future__ import annotations

import http.client
import json
import pathlib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from kubenova.certs import authority
from kubenova.subresources import app, server
from tests.unit.subresources import support

BASE = "/apis/subresources.compute.kubenova.io/v1"
AS_ALICE = {"X-Remote-User": "alice", "X-Remote-Group": "system:authenticated"}


@pytest.fixture(scope="module")
def pki() -> support.Pki:
    return support.make_pki()


@pytest.fixture
def serving(
    pki: support.Pki, tmp_path: pathlib.Path
) -> Iterator[tuple[int, support.RecordingMint]]:
    cert, key = support.write_pair(tmp_path, "serving", pki.serving)
    context = server.tls_context(
        pathlib.Path(cert), pathlib.Path(key), pki.front_proxy_ca.cert_pem().decode()
    )
    mint = support.RecordingMint()
    urls = support.console_urls(support.FakeKube(support.instance_object()), support.place(), mint)
    running = server.serve(app.App(pki.request_headers(), urls), context, "127.0.0.1", 0)
    try:
        yield running.port, mint
    finally:
        running.stop()


def request(
    port: int,
    pki: support.Pki,
    tmp_path: pathlib.Path,
    method: str,
    path: str,
    client: authority.KeyPair | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, Any]:
    context = ssl.create_default_context(cadata=pki.serving_ca.cert_pem().decode())
    if client is not None:
        cert, key = support.write_pair(tmp_path, "client", client)
        context.load_cert_chain(cert, key)
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        connection.request(
            method, path, body=b"{}" if method == "POST" else None, headers=headers or {}
        )
        response = connection.getresponse()
        raw = response.read()
        kind = response.headers.get("Content-Type", "")
        body = json.loads(raw) if kind.startswith("application/json") else raw.decode()
        return response.status, response.headers, body
    finally:
        connection.close()


def test_health_checks_answer_without_a_certificate(serving, pki, tmp_path) -> None:
    port, _ = serving
    assert request(port, pki, tmp_path, "GET", "/readyz")[::2] == (200, "ok")


def test_the_openapi_document_answers_without_a_certificate(serving, pki, tmp_path) -> None:
    port, _ = serving
    code, _, body = request(port, pki, tmp_path, "GET", "/openapi/v2")
    assert (code, body["swagger"], body["paths"]) == (200, "2.0", {})


def test_discovery_answers_the_front_proxy(serving, pki, tmp_path) -> None:
    port, _ = serving
    code, _, body = request(port, pki, tmp_path, "GET", BASE, pki.front_proxy_client, AS_ALICE)
    assert code == 200
    assert body["kind"] == "APIResourceList"


def test_user_headers_without_the_front_proxy_certificate_are_refused(
    serving, pki, tmp_path
) -> None:
    port, mint = serving
    code, _, body = request(
        port,
        pki,
        tmp_path,
        "POST",
        f"{BASE}/namespaces/demo/instances/web-1/consoleurl",
        headers=AS_ALICE,
    )
    assert code == 401
    assert body["kind"] == "Status"
    assert body["reason"] == "Unauthorized"
    assert mint.calls == []


def test_a_certificate_of_the_front_proxy_ca_with_another_name_is_refused(
    serving, pki, tmp_path
) -> None:
    port, mint = serving
    impostor = support.client_cert(pki.front_proxy_ca, "someone-else")
    code, _, body = request(
        port,
        pki,
        tmp_path,
        "POST",
        f"{BASE}/namespaces/demo/instances/web-1/consoleurl",
        impostor,
        AS_ALICE,
    )
    assert code == 401
    assert "someone-else" in body["message"]
    assert mint.calls == []


def test_a_client_certificate_of_another_ca_fails_the_handshake(serving, pki, tmp_path) -> None:
    port, mint = serving
    stranger = support.client_cert(authority.issue_ca("stranger"), support.FRONT_PROXY_NAME)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        request(
            port,
            pki,
            tmp_path,
            "POST",
            f"{BASE}/namespaces/demo/instances/web-1/consoleurl",
            stranger,
            AS_ALICE,
        )
    assert mint.calls == []


def test_the_front_proxy_gets_a_console_url_that_no_cache_keeps(serving, pki, tmp_path) -> None:
    port, mint = serving
    code, headers, body = request(
        port,
        pki,
        tmp_path,
        "POST",
        f"{BASE}/namespaces/demo/instances/web-1/consoleurl?type=novnc",
        pki.front_proxy_client,
        AS_ALICE,
    )
    assert code == 201
    assert headers["Cache-Control"] == "no-store"
    assert body["url"].startswith("https://console.example:6080/vnc.html?token=")
    assert len(mint.calls) == 1


def test_a_bad_type_is_a_bad_request_status(serving, pki, tmp_path) -> None:
    port, _ = serving
    code, _, body = request(
        port,
        pki,
        tmp_path,
        "POST",
        f"{BASE}/namespaces/demo/instances/web-1/consoleurl?type=rdp",
        pki.front_proxy_client,
        AS_ALICE,
    )
    assert (code, body["reason"]) == (400, "BadRequest")


def test_get_on_consoleurl_is_not_allowed(serving, pki, tmp_path) -> None:
    port, _ = serving
    code, _, body = request(
        port,
        pki,
        tmp_path,
        "GET",
        f"{BASE}/namespaces/demo/instances/web-1/consoleurl",
        pki.front_proxy_client,
        AS_ALICE,
    )
    assert code == 405
    assert "use POST" in body["message"]


@pytest.mark.parametrize(
    ("sub", "says"), [("consolelog", "not served yet"), ("console", "not served by this server")]
)
def test_the_subresources_this_server_was_not_given_say_so(
    serving, pki, tmp_path, sub, says
) -> None:
    """A server made without a console-log caller or a stream opener answers 501."""
    port, _ = serving
    code, _, body = request(
        port,
        pki,
        tmp_path,
        "GET",
        f"{BASE}/namespaces/demo/instances/web-1/{sub}",
        pki.front_proxy_client,
        AS_ALICE,
    )
    assert code == 501
    assert body["message"].startswith(f"instances/{sub}: ")
    assert says in body["message"]
