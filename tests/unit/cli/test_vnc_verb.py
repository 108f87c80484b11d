"""kubectl nova vnc NAME (without --url): a local port whose connections each get their own
websocket to the vnc subresource, a viewer started when one is installed, Ctrl-C exits 0,
and refusals printed in kubectl's words."""

from __future__ import annotations

import _thread
import json
import shutil
import socket
import threading
import time
from typing import Any

import pytest
import websocket

from kubenova.cli import kube, kubectl_nova, vnc_proxy
from tests.support.ctrl_c import ctrl_c
from tests.unit.cli import helpers
from tests.unit.subresources import stream_support, support

# The plugin runs in this process and stops on Ctrl-C, which the tests' threads send.
pytestmark = pytest.mark.usefixtures("ctrl_c")

__all__ = ["ctrl_c"]  # a fixture this module uses

FORBIDDEN_MESSAGE = (
    'instances.subresources.compute.kubenova.io "web-1" is forbidden: User "bob" cannot get'
    ' resource "instances/vnc" in API group "subresources.compute.kubenova.io"'
)


def forbidden() -> websocket.WebSocketBadStatusException:
    body = {"kind": "Status", "reason": "Forbidden", "message": FORBIDDEN_MESSAGE, "code": 403}
    return websocket.WebSocketBadStatusException(
        "Handshake status 403 Forbidden", 403, "Forbidden", {}, json.dumps(body).encode()
    )


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def connect_when_listening(port: int, timeout_s: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def cluster(monkeypatch):
    monkeypatch.setattr(kube, "connect", lambda k, c, n: helpers.cluster(n or "default"))


@pytest.fixture(scope="module")
def pki() -> support.Pki:
    return support.make_pki()


@pytest.fixture
def echo_streams(monkeypatch, pki, tmp_path):
    """open_stream reaches an echoing vnc subresource over real TLS; the namespaces and names
    asked for are kept."""
    asked: list[tuple[str, str]] = []
    with stream_support.echo_server(pki, tmp_path) as (port, opener):
        options = stream_support.sslopt(pki, tmp_path, pki.front_proxy_client)

        def open_stream(cluster: kube.Cluster, name: str) -> websocket.WebSocket:
            asked.append((cluster.namespace, name))
            path = f"/apis/subresources.compute.kubenova.io/v1/namespaces/demo/instances/{name}/vnc"
            return stream_support.connect(port, options, path=path)

        monkeypatch.setattr(vnc_proxy, "open_stream", open_stream)
        yield asked, opener


def test_each_local_connection_is_relayed_over_its_own_websocket_until_ctrl_c(
    cluster, echo_streams, capsys
) -> None:
    asked, opener = echo_streams
    port = free_port()
    replies: list[bytes] = []

    def viewers() -> None:
        try:
            for text in (b"first", b"second"):
                with connect_when_listening(port) as viewer:
                    viewer.sendall(text)
                    replies.append(viewer.recv(100))
        finally:
            _thread.interrupt_main()

    threading.Thread(target=viewers, daemon=True).start()
    code = kubectl_nova.main(["vnc", "web-1", "-n", "prod", "--proxy-only", "--port", str(port)])

    out, _ = capsys.readouterr()
    assert code == 0
    assert f"listening on 127.0.0.1:{port}" in out
    assert replies == [b"FIRST", b"SECOND"]
    # One websocket before listening (refusals come first), then one per connection.
    assert asked == [("prod", "web-1")] * 3
    assert len(opener.opened) == 3


def test_a_refusal_is_printed_as_kubectl_prints_it_and_nothing_listens(
    cluster, monkeypatch, capsys
) -> None:
    def refused(cluster: kube.Cluster, name: str) -> Any:
        raise kube.CommandError(vnc_proxy.describe_refusal(forbidden(), cluster.server))

    monkeypatch.setattr(vnc_proxy, "open_stream", refused)
    listened: list[Any] = []
    monkeypatch.setattr(socket, "create_server", lambda *a, **k: listened.append(a))

    code = kubectl_nova.main(["vnc", "web-1", "--proxy-only"])

    assert code == 1
    assert capsys.readouterr().err.strip() == f"Error from server (Forbidden): {FORBIDDEN_MESSAGE}"
    assert listened == []


def test_a_refused_upgrade_without_a_status_body_is_named_by_its_code() -> None:
    bare = websocket.WebSocketBadStatusException("Handshake status 404", 404, "Not Found", {}, None)

    assert vnc_proxy.describe_refusal(bare, "https://k:6443").startswith(
        "Error from server (NotFound): "
    )


def test_without_a_viewer_installed_it_says_so_and_keeps_serving(
    cluster, echo_streams, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(shutil, "which", lambda program: None)
    port = free_port()
    replies: list[bytes] = []

    def viewer() -> None:
        try:
            with connect_when_listening(port) as sock:
                sock.sendall(b"still here")
                replies.append(sock.recv(100))
        finally:
            _thread.interrupt_main()

    threading.Thread(target=viewer, daemon=True).start()
    code = kubectl_nova.main(["vnc", "web-1", "--port", str(port)])

    assert code == 0
    assert "no VNC viewer found (vncviewer or remote-viewer)" in capsys.readouterr().err
    assert replies == [b"STILL HERE"]


def test_the_verb_ends_when_the_viewer_it_started_exits(
    cluster, echo_streams, monkeypatch, capsys
) -> None:
    started: list[list[str]] = []

    def viewer_command(address: str, port: int) -> list[str]:
        started.append([address, str(port)])
        return ["true"]

    monkeypatch.setattr(vnc_proxy, "viewer_command", viewer_command)

    code = kubectl_nova.main(["vnc", "web-1", "--port", "0"])

    assert code == 0
    assert len(started) == 1
    assert started[0][0] == "127.0.0.1"
    assert started[0][1] != "0"
    assert "starting true" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"vncviewer", "remote-viewer"}, ["/usr/bin/vncviewer", "127.0.0.1::5999"]),
        ({"remote-viewer"}, ["/usr/bin/remote-viewer", "vnc://127.0.0.1:5999"]),
        (set(), []),
    ],
)
def test_vncviewer_is_preferred_then_remote_viewer(installed, expected) -> None:
    def which(program: str) -> str | None:
        return f"/usr/bin/{program}" if program in installed else None

    assert vnc_proxy.viewer_command("0.0.0.0", 5999, which) == expected


def test_the_options_reach_the_local_proxy(cluster, monkeypatch) -> None:
    asked: list[tuple[Any, ...]] = []

    def run(cluster: kube.Cluster, *args: Any) -> int:
        asked.append((cluster.namespace, *args))
        return 0

    monkeypatch.setattr(vnc_proxy, "run", run)

    assert kubectl_nova.main(["vnc", "web-1"]) == 0
    assert (
        kubectl_nova.main(
            ["vnc", "db", "-n", "p", "--address", "0.0.0.0", "--port", "5999", "--proxy-only"]
        )
        == 0
    )

    assert asked == [
        ("default", "web-1", "127.0.0.1", 0, False),
        ("p", "db", "0.0.0.0", 5999, True),
    ]


@pytest.mark.parametrize("port", ["65536", "-1", "vnc"])
def test_a_port_that_is_not_one_is_a_usage_error(cluster, port, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        kubectl_nova.main(["vnc", "web-1", "--port", port])

    assert exited.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_the_websocket_goes_to_the_vnc_subresource_with_the_users_token() -> None:
    cluster = helpers.cluster("prod")
    cluster.api.configuration.host = "https://kube.example:6443"
    cluster.api.configuration.api_key = {"BearerToken": "Bearer s3cret"}

    where = vnc_proxy.target(cluster, "web-1")

    assert where.url == (
        "wss://kube.example:6443/apis/subresources.compute.kubenova.io/v1/namespaces/prod"
        "/instances/web-1/vnc"
    )
    assert where.headers == {
        "sec-websocket-protocol": vnc_proxy.SUBPROTOCOL,
        "authorization": "Bearer s3cret",
    }
