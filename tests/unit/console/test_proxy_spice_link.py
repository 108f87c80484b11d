"""The console proxy's SPICE path whole, on loopback, with only the database's verdict on the
token stubbed: a spice-html5 channel over a websocket, TLS to a fake spice-server
(:mod:`tests.support.fake_spice`) that wants the guest's ticket. With the key the channel is
linked and relayed; without it the browser's own link reaches the server (and is denied);
SASL closes the websocket with its reason."""

from __future__ import annotations

import datetime as dt
import pathlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
import websocket

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova.console import auth
from kubenova.console.proxy import server as proxy_server
from kubenova.console.proxy import settings as proxy_settings
from kubenova.console.proxy import spice_link
from kubenova.db import models
from tests.support import console_pki
from tests.support.fake_spice import KEY, TICKET, UUID, FakeSpiceServer, SpiceHtml5, new_server_key


class TlsSpiceServer:
    """A :class:`FakeSpiceServer` behind TLS on a loopback port, for one connection."""

    def __init__(self, server: FakeSpiceServer, context: ssl.SSLContext) -> None:
        self.server = server
        self.listening = socket.create_server(("127.0.0.1", 0))
        self.port = self.listening.getsockname()[1]
        self.errors: list[BaseException] = []
        self._context = context
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.listening.settimeout(20)
            sock, _ = self.listening.accept()
            with self._context.wrap_socket(sock, server_side=True) as secured:
                self.server.serve(secured)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)

    def join(self) -> None:
        self._thread.join(timeout=20)
        self.listening.close()
        assert not self._thread.is_alive()
        assert not self.errors, self.errors


@pytest.fixture(scope="module")
def x509(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """QEMU's and the proxy's files in one directory (both sides' ca-cert.pem is the same)."""
    ca = authority.issue_ca()
    directory = tmp_path_factory.mktemp("x509")
    console_pki.write_host_x509_dir(directory, ca)
    return console_pki.write_proxy_x509_dir(directory, ca)


@pytest.fixture
def tls_spice(x509) -> Iterator[TlsSpiceServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        x509 / console_certs.SERVER_CERT_FILE, x509 / console_certs.SERVER_KEY_FILE
    )
    spice = TlsSpiceServer(FakeSpiceServer(new_server_key(), TICKET), context)
    yield spice
    spice.join()


def no_database() -> object:
    raise AssertionError("the database was used: auth.authorize is stubbed")


def running_proxy(
    x509: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    spice_port: int,
    key: bytes | None,
) -> proxy_server.ConsoleProxyServer:
    def authorize(*args: object, **kwargs: object) -> auth.ConnectionInfo:
        # The database's verdict on the token: this instance's SPICE, on localhost.
        return auth.ConnectionInfo(
            UUID,
            auth.ConsoleType.SPICE_HTML5,
            "localhost",
            "127.0.0.1",
            spice_port,
            spice_port,
            None,
            models.utcnow() + dt.timedelta(minutes=10),
        )

    monkeypatch.setattr(auth, "authorize", authorize)
    settings = proxy_settings.ProxySettings(
        listen_host="127.0.0.1",
        listen_port=0,
        x509_dir=x509,
        web_dir=tmp_path,
        spice_ticket_key=key,
    )
    proxy = proxy_server.ConsoleProxyServer(settings, session_factory=no_database)
    proxy.start_in_thread()
    return proxy


@pytest.fixture
def proxy_with(
    x509, tmp_path, monkeypatch
) -> Iterator[Callable[..., proxy_server.ConsoleProxyServer]]:
    started: list[proxy_server.ConsoleProxyServer] = []

    def start(spice_port: int, key: bytes | None) -> proxy_server.ConsoleProxyServer:
        started.append(running_proxy(x509, tmp_path, monkeypatch, spice_port, key))
        return started[-1]

    yield start
    for proxy in started:
        proxy.shutdown()
        proxy.server_close()


def open_channel(proxy: proxy_server.ConsoleProxyServer) -> websocket.WebSocket:
    return websocket.create_connection(
        f"ws://127.0.0.1:{proxy.port}/websockify?token=t0ken",
        timeout=20,
        subprotocols=["binary"],
        suppress_origin=True,
    )


def send_link(ws: websocket.WebSocket, browser: SpiceHtml5, reply_size: int) -> None:
    """spice-html5's link message, the server's reply read, and the browser's answer sent."""
    ws.send_binary(browser.leftover())
    received = b""
    while len(received) < reply_size:
        received += ws.recv()
    browser.sendall(received)
    ws.send_binary(browser.leftover())


def link_result(ws: websocket.WebSocket) -> int:
    (result,) = struct.unpack("<I", ws.recv())
    return int(result)


def test_the_proxy_links_a_spice_channel_with_the_ticket_and_relays_it(tls_spice, proxy_with):
    proxy = proxy_with(tls_spice.port, KEY)
    ws = open_channel(proxy)
    try:
        send_link(ws, SpiceHtml5(password=""), len(tls_spice.server.reply()))
        assert link_result(ws) == spice_link.LINK_ERR_OK
        ws.send_binary(b"relayed after the link")
    finally:
        ws.close()
        ws.shutdown()  # close() leaves the socket open once the proxy closed first
    tls_spice.join()
    assert tls_spice.server.decrypted == TICKET.encode() + b"\0"
    assert bytes(tls_spice.server.after_ticket) == b"relayed after the link"


def test_without_a_key_the_browsers_link_goes_through_unchanged(tls_spice, proxy_with):
    # The control: a guest whose SPICE wants a ticket refuses a browser that does not hold it.
    proxy = proxy_with(tls_spice.port, None)
    ws = open_channel(proxy)
    try:
        send_link(ws, SpiceHtml5(password=""), len(tls_spice.server.reply()))
        assert link_result(ws) == spice_link.LINK_ERR_PERMISSION_DENIED
    finally:
        ws.close()
        ws.shutdown()  # close() leaves the socket open once the proxy closed first
    tls_spice.join()
    assert tls_spice.server.decrypted == b"\0"


def test_a_sasl_channel_is_closed_with_the_reason(tls_spice, proxy_with):
    proxy = proxy_with(tls_spice.port, KEY)
    ws = open_channel(proxy)
    try:
        send_link(ws, SpiceHtml5(mechanism=spice_link.AUTH_SASL), len(tls_spice.server.reply()))
        opcode, frame = ws.recv_data(control_frame=True)
    finally:
        ws.close()
        ws.shutdown()  # close() leaves the socket open once the proxy closed first
    tls_spice.join()
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    (code,) = struct.unpack("!H", frame[:2])
    assert code == spice_link.CLOSE_POLICY
    assert b"SASL" in frame[2:]
    assert tls_spice.server.mechanism is None  # the server never heard the mechanism
