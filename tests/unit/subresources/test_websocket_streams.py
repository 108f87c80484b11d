"""The websocket subresources over real TLS on loopback: every refusal is an HTTP Status
before the upgrade (and before anything is opened), and an accepted upgrade relays binary
messages to the opener's socket and back."""

from __future__ import annotations

import http.client
import json
import pathlib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from kubenova.subresources import app, streams
from tests.unit.subresources import stream_support, support
from tests.unit.subresources.stream_support import AS_ALICE, VNC, connect, sslopt

BASE = "/apis/subresources.compute.kubenova.io/v1"


@pytest.fixture(scope="module")
def pki() -> support.Pki:
    return support.make_pki()


@pytest.fixture
def serving(
    pki: support.Pki, tmp_path: pathlib.Path
) -> Iterator[tuple[int, stream_support.EchoOpener]]:
    with stream_support.echo_server(pki, tmp_path) as served:
        yield served


def refusal(port: int, options: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(port, options, **kwargs)
    return refused.value.status_code, json.loads(refused.value.resp_body or b"{}")


def test_the_front_proxy_gets_a_websocket_relayed_to_the_opened_stream(
    serving, pki, tmp_path
) -> None:
    port, opener = serving
    ws = connect(port, sslopt(pki, tmp_path, pki.front_proxy_client))
    try:
        ws.send_binary(b"hello")
        opcode, data = ws.recv_data()
        ws.send_binary(b"again")
        _, more = ws.recv_data()
    finally:
        ws.close()

    assert (opcode, data, more) == (websocket.ABNF.OPCODE_BINARY, b"HELLO", b"AGAIN")
    assert opener.opened == [("demo", "web-1", "alice")]


def test_the_plain_subprotocol_is_chosen_when_asked_for(serving, pki, tmp_path) -> None:
    port, _ = serving
    ws = connect(
        port,
        sslopt(pki, tmp_path, pki.front_proxy_client),
        subprotocols=[streams.SUBPROTOCOL],
    )
    try:
        assert ws.getsubprotocol() == streams.SUBPROTOCOL
    finally:
        ws.close()


def test_an_upgrade_without_the_front_proxy_certificate_is_refused_before_opening(
    serving, pki, tmp_path
) -> None:
    port, opener = serving

    code, body = refusal(port, sslopt(pki, tmp_path))

    assert (code, body["reason"]) == (401, "Unauthorized")
    assert "kube-apiserver" in body["message"]
    assert opener.opened == []


def test_an_upgrade_with_another_name_of_the_front_proxy_ca_is_refused(
    serving, pki, tmp_path
) -> None:
    port, opener = serving
    impostor = support.client_cert(pki.front_proxy_ca, "someone-else")

    code, body = refusal(port, sslopt(pki, tmp_path, impostor))

    assert code == 401
    assert "someone-else" in body["message"]
    assert opener.opened == []


def test_a_get_that_is_not_a_websocket_is_a_bad_request_that_says_how(
    serving, pki, tmp_path
) -> None:
    port, opener = serving
    context = ssl.create_default_context(cadata=pki.serving_ca.cert_pem().decode())
    context.load_cert_chain(*support.write_pair(tmp_path, "client", pki.front_proxy_client))
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        connection.request("GET", VNC, headers=AS_ALICE)
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()

    assert (response.status, body["kind"], body["reason"]) == (400, "Status", "BadRequest")
    assert "Upgrade: websocket" in body["message"]
    assert opener.opened == []


def test_an_unknown_subprotocol_is_refused_before_opening(serving, pki, tmp_path) -> None:
    port, opener = serving

    code, body = refusal(
        port, sslopt(pki, tmp_path, pki.front_proxy_client), subprotocols=["channel.k8s.io"]
    )

    assert code == 400
    assert streams.SUBPROTOCOL in body["message"]
    assert opener.opened == []


def test_the_openers_refusal_is_its_status_before_the_upgrade(serving, pki, tmp_path) -> None:
    port, _ = serving

    code, body = refusal(
        port,
        sslopt(pki, tmp_path, pki.front_proxy_client),
        path=f"{BASE}/namespaces/demo/instances/stopped/vnc",
    )

    assert (code, body["reason"]) == (409, "Conflict")
    assert body["message"] == 'instance "stopped" is not running'


def test_a_target_that_closes_closes_the_websocket_saying_so(serving, pki, tmp_path) -> None:
    port, _ = serving
    ws = connect(
        port,
        sslopt(pki, tmp_path, pki.front_proxy_client),
        path=f"{BASE}/namespaces/demo/instances/gone/vnc",
    )
    try:
        opcode, frame = ws.recv_data(control_frame=True)
    finally:
        ws.close()
        # Answering the server's close marked the client closed without closing its socket.
        ws.shutdown()

    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert b"target closed" in frame[2:]


def test_an_open_stream_does_not_hold_up_other_requests(serving, pki, tmp_path) -> None:
    port, _ = serving
    options = sslopt(pki, tmp_path, pki.front_proxy_client)
    first = connect(port, options)
    try:
        second = connect(port, options)
        try:
            second.send_binary(b"two")
            assert second.recv_data()[1] == b"TWO"
        finally:
            second.close()
        first.send_binary(b"one")
        assert first.recv_data()[1] == b"ONE"
    finally:
        first.close()


def test_a_server_without_streams_says_vnc_is_not_served(pki) -> None:
    urls = support.console_urls(
        support.FakeKube(support.instance_object()), support.place(), support.RecordingMint()
    )
    answer = app.App(pki.request_headers(), urls).handle(
        "GET", VNC, support.peer_cert(support.FRONT_PROXY_NAME), support.headers(*AS_ALICE.items())
    )

    assert answer.code == 501
    assert isinstance(answer.body, dict)
    assert answer.body["message"] == "instances/vnc: not served by this server"
