"""A subresources server over real TLS on loopback whose ``vnc`` stream is an echo, and a
websocket client that reaches it as the kube-apiserver does (front-proxy certificate and
user headers)."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import websocket

from kubenova.subresources import app, requestheader, server, status, streams
from tests.unit.subresources import support

VNC = "/apis/subresources.compute.kubenova.io/v1/namespaces/demo/instances/web-1/vnc"
AS_ALICE = {"X-Remote-User": "alice", "X-Remote-Group": "system:authenticated"}


class EchoOpener:
    """Opens a socket whose far end answers each chunk upper-cased; ``stopped`` is a 409 and
    ``gone`` a target that closes at once."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str, str]] = []

    def open(self, namespace: str, name: str, user: requestheader.User) -> socket.socket:
        if name == "stopped":
            raise status.conflict('instance "stopped" is not running', name=name)
        self.opened.append((namespace, name, user.name))
        ours, theirs = socket.socketpair()
        if name == "gone":
            theirs.close()
        else:
            threading.Thread(target=_echo_upper, args=(theirs,), daemon=True).start()
        return ours


def _echo_upper(sock: socket.socket) -> None:
    with sock:
        while data := sock.recv(4096):
            sock.sendall(data.upper())


@contextlib.contextmanager
def echo_server(pki: support.Pki, tmp_path: pathlib.Path) -> Iterator[tuple[int, EchoOpener]]:
    """The server on a free loopback port, with :class:`EchoOpener` as ``vnc``."""
    cert, key = support.write_pair(tmp_path, "serving", pki.serving)
    context = server.tls_context(
        pathlib.Path(cert), pathlib.Path(key), pki.front_proxy_ca.cert_pem().decode()
    )
    opener = EchoOpener()
    urls = support.console_urls(
        support.FakeKube(support.instance_object()), support.place(), support.RecordingMint()
    )
    subresources = streams.Streams(pki.request_headers(), {"vnc": opener})
    running = server.serve(
        app.App(pki.request_headers(), urls), context, "127.0.0.1", 0, subresources
    )
    try:
        yield running.port, opener
    finally:
        running.stop()


def sslopt(pki: support.Pki, tmp_path: pathlib.Path, client: Any = None) -> dict[str, Any]:
    ca = tmp_path / "serving-ca.crt"
    ca.write_bytes(pki.serving_ca.cert_pem())
    options: dict[str, Any] = {"ca_certs": str(ca), "cert_reqs": ssl.CERT_REQUIRED}
    if client is not None:
        options["certfile"], options["keyfile"] = support.write_pair(tmp_path, "client", client)
    return options


def connect(
    port: int,
    options: dict[str, Any],
    path: str = VNC,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
) -> websocket.WebSocket:
    return websocket.create_connection(
        f"wss://localhost:{port}{path}",
        timeout=10,
        sslopt=options,
        header=AS_ALICE if headers is None else headers,
        subprotocols=subprotocols,
    )
