"""``POST /agent-credentials`` over TLS: what the token proves is all that counts."""

from __future__ import annotations

import datetime
import json
import pathlib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from kubenova.agent_credentials import server
from kubenova.certs import authority
from tests.unit.agent_credentials.endpoint import Endpoint, running_endpoint


@pytest.fixture
def endpoint(tmp_path: pathlib.Path) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path) as running:
        yield running


def post(
    endpoint: Endpoint,
    *,
    token: str | None,
    body: bytes = b"",
    path: str = "",
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, str]]:
    request = urllib.request.Request(endpoint.url + path, data=body or None, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_the_agent_of_node_a_gets_node_a_over_tls(endpoint: Endpoint) -> None:
    status, body, headers = post(endpoint, token="token-of-node-a")
    assert status == 200
    assert (body["node"], body["user"]) == ("node-a", "agent-node-a")
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Request-Id"] == body["requestId"]


def test_a_request_naming_another_node_still_gets_the_tokens_node(endpoint: Endpoint) -> None:
    status, body, _ = post(
        endpoint,
        token="token-of-node-a",
        body=json.dumps({"node": "node-b", "user": "agent-node-b"}).encode(),
        path="?node=node-b",
        headers={"Content-Type": "application/json", "X-Kubenova-Node": "node-b"},
    )
    assert status == 200
    assert body["node"] == "node-a"
    assert set(endpoint.admin.passwords) == {"agent-node-a"}


def test_another_service_accounts_token_gets_a_json_refusal(endpoint: Endpoint) -> None:
    status, body, _ = post(endpoint, token="operator-token")
    assert status == 403
    assert body["reason"].startswith("only system:serviceaccount:kubenova:kubenova-agent")
    assert endpoint.admin.passwords == {}


def test_no_token_is_unauthorized(endpoint: Endpoint) -> None:
    status, body, _ = post(endpoint, token=None)
    assert status == 401
    assert "Bearer" in body["reason"]


def test_the_callers_request_id_is_kept_when_it_looks_like_one(endpoint: Endpoint) -> None:
    _, body, _ = post(endpoint, token="token-of-node-a", headers={"X-Request-Id": "req-abc-1"})
    assert body["requestId"] == "req-abc-1"
    _, body, _ = post(endpoint, token="token-of-node-a", headers={"X-Request-Id": "a b\tc"})
    assert body["requestId"].startswith("req-")
    assert body["requestId"] != "a b\tc"


def test_other_paths_and_methods_are_not_the_exchange(endpoint: Endpoint) -> None:
    request = urllib.request.Request(
        endpoint.url.replace("/agent-credentials", "/other"), data=b"", method="POST"
    )
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10, context=context)
    info.value.close()
    assert info.value.code == 404
    status, _, headers = post(endpoint, token="token-of-node-a", method="GET")
    assert status == 405
    assert headers["Allow"] == "POST"
    assert endpoint.reviewer.asked == []


def test_a_client_that_does_not_trust_kubenovas_ca_cannot_connect(endpoint: Endpoint) -> None:
    request = urllib.request.Request(endpoint.url, data=b"", method="POST")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(request, timeout=10, context=ssl.create_default_context())


def test_the_serving_certificate_is_issued_again_after_two_thirds_of_its_life() -> None:
    start = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)
    now = [start]
    certificate = server.ServingCertificate(authority.issue_ca(now=start), ["x"], lambda: now[0])
    first = certificate.context()
    now[0] = start + datetime.timedelta(days=59)
    assert certificate.context() is first
    now[0] = start + datetime.timedelta(days=61)
    assert certificate.context() is not first
