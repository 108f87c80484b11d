"""The relay between the browser's websocket and a TLS host: a host that sends TLS 1.3
session tickets and then waits for the client to speak first (as SPICE does) gets the
client's bytes, and the reply comes back; a host that closes ends the relay."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova.console.proxy import relay


class FakeWebSocket:
    """websockify's side of the relay on a socket pair: one message per recv."""

    def __init__(self, sock: socket.socket) -> None:
        self.request = sock

    def recv_frames(self):
        data = self.request.recv(4096)
        if not data:
            return [], {"code": 1000, "reason": "browser left"}
        return [data], False

    def send_frames(self, bufs=None):
        for buf in bufs or []:
            self.request.sendall(buf)
        return False


@pytest.fixture
def tls_pair(tmp_path):
    ca = authority.issue_ca()
    host = console_certs.issue_host_cert(ca, "localhost", ["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(host.cert_pem())
    (tmp_path / "key.pem").write_bytes(host.key_pem())
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    return server, client


def test_a_host_that_waits_for_the_client_to_speak_first_gets_its_bytes(tls_pair):
    server_context, client_context = tls_pair
    host_end, proxy_end = socket.socketpair()
    browser_end, ws_end = socket.socketpair()
    heard: list[bytes] = []

    def host() -> None:
        with server_context.wrap_socket(host_end, server_side=True) as tls:
            heard.append(tls.recv(100))  # after its session tickets, it waits
            tls.sendall(b"REPLY")

    thread = threading.Thread(target=host, daemon=True)
    thread.start()
    target = client_context.wrap_socket(proxy_end, server_hostname="localhost")
    assert target.version() == "TLSv1.3"
    browser_end.sendall(b"HELLO")
    ended: list[relay.Closed] = []

    def run_relay() -> None:
        try:
            relay.relay(FakeWebSocket(ws_end), target)
        except relay.Closed as closed:
            ended.append(closed)

    relayed = threading.Thread(target=run_relay, daemon=True)
    relayed.start()
    browser_end.settimeout(10)

    assert browser_end.recv(100) == b"REPLY"
    thread.join(10)
    relayed.join(10)
    assert heard == [b"HELLO"]
    assert [closed.code for closed in ended] == [1000]  # the host closed, the relay ended
    for sock in (target, browser_end, ws_end):
        sock.close()
