"""The RFB security proxy against a fake QEMU on a socket pair: the browser is offered None
only, QEMU gets VeNCrypt X509None over TLS with the proxy's client certificate, and every
way the handshake can fail is told to the browser and raised."""

from __future__ import annotations

import pathlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova.console.proxy import rfb
from tests.support import console_pki


class FakeBrowser:
    """A tenant stream that sends the given bytes and records what it is sent."""

    def __init__(self, sends: bytes) -> None:
        self.inbox = bytearray(sends)
        self.received = bytearray()

    def recv_exact(self, count: int) -> bytes:
        assert len(self.inbox) >= count, "the proxy read more than the browser sent"
        data = bytes(self.inbox[:count])
        del self.inbox[:count]
        return data

    def sendall(self, data: bytes) -> None:
        self.received += data


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


@pytest.fixture(scope="module")
def x509(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The host's and the proxy's files, as QEMU and the proxy read them, in one directory."""
    ca = authority.issue_ca()
    directory = tmp_path_factory.mktemp("x509")
    # Both sides' ca-cert.pem is the same bundle, so one directory holds the two.
    console_pki.write_host_x509_dir(directory, ca)
    return console_pki.write_proxy_x509_dir(directory, ca)


@pytest.fixture
def client_context(x509: pathlib.Path) -> ssl.SSLContext:
    return rfb.client_context(
        str(x509 / console_certs.CA_FILE),
        str(x509 / console_certs.CLIENT_CERT_FILE),
        str(x509 / console_certs.CLIENT_KEY_FILE),
    )


def qemu_context(x509: pathlib.Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        x509 / console_certs.SERVER_CERT_FILE, x509 / console_certs.SERVER_KEY_FILE
    )
    context.load_verify_locations(x509 / console_certs.CA_FILE)
    context.verify_mode = ssl.CERT_REQUIRED  # QEMU's verify-peer=yes
    return context


@pytest.fixture
def fake_qemu() -> Iterator[Callable[[Callable[[socket.socket], None]], socket.socket]]:
    """Runs a server script on one end of a socket pair; returns the other end."""
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []
    proxy_ends: list[socket.socket] = []

    def start(script: Callable[[socket.socket], None]) -> socket.socket:
        proxy_end, qemu_end = socket.socketpair()

        def run() -> None:
            try:
                script(qemu_end)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
            finally:
                qemu_end.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        proxy_ends.append(proxy_end)
        return proxy_end

    yield start
    for end in proxy_ends:
        end.close()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors, errors


def vencrypt_server(x509: pathlib.Path, subtypes: tuple[int, ...] = (rfb.VENCRYPT_X509_NONE,)):
    def script(sock: socket.socket) -> None:
        sock.sendall(rfb.VERSION_3_8)
        assert recv_exact(sock, 12) == rfb.VERSION_3_8
        sock.sendall(bytes((1, rfb.SECURITY_VENCRYPT)))
        assert recv_exact(sock, 1)[0] == rfb.SECURITY_VENCRYPT
        sock.sendall(rfb.VENCRYPT_VERSION)
        assert recv_exact(sock, 2) == rfb.VENCRYPT_VERSION
        sock.sendall(
            b"\x00" + bytes((len(subtypes),)) + struct.pack(f"!{len(subtypes)}I", *subtypes)
        )
        if rfb.VENCRYPT_X509_NONE not in subtypes:
            recv_exact(sock, 0)
            return
        assert struct.unpack("!I", recv_exact(sock, 4))[0] == rfb.VENCRYPT_X509_NONE
        sock.sendall(b"\x01")
        with qemu_context(x509).wrap_socket(sock, server_side=True) as secured:
            peer = secured.getpeercert()
            assert peer is not None
            assert ((("commonName", console_certs.PROXY_COMMON_NAME),)) in peer["subject"]
            secured.sendall(struct.pack("!I", 0))  # SecurityResult: OK
            secured.sendall(recv_exact(secured, 5).upper())  # then anything, relayed

    return script


def test_the_browser_gets_none_and_qemu_gets_vencrypt_x509none_over_tls(
    x509, client_context, fake_qemu
):
    browser = FakeBrowser(rfb.VERSION_3_8 + bytes((rfb.SECURITY_NONE,)))
    compute = fake_qemu(vencrypt_server(x509))

    secured = rfb.negotiate(browser, compute, client_context, "localhost")

    with secured:
        assert bytes(browser.received) == rfb.VERSION_3_8 + bytes((1, rfb.SECURITY_NONE))
        assert recv_exact(secured, 4) == struct.pack("!I", 0)
        secured.sendall(b"hello")
        assert recv_exact(secured, 5) == b"HELLO"
        assert secured.version() in {"TLSv1.2", "TLSv1.3"}


def test_a_server_without_vencrypt_is_refused_and_the_browser_told_why(client_context, fake_qemu):
    def plain_vnc(sock: socket.socket) -> None:
        sock.sendall(rfb.VERSION_3_8)
        recv_exact(sock, 12)
        sock.sendall(bytes((1, rfb.SECURITY_NONE)))

    browser = FakeBrowser(rfb.VERSION_3_8)
    with pytest.raises(rfb.NegotiationError, match="without VeNCrypt"):
        rfb.negotiate(browser, fake_qemu(plain_vnc), client_context, "localhost")
    # RFB 3.8's refusal before a type is chosen: no types, then the reason.
    failure = bytes(browser.received[12:])
    assert failure[0] == 0
    (length,) = struct.unpack("!I", failure[1:5])
    assert b"without VeNCrypt" in failure[5 : 5 + length]


def test_x509vnc_alone_is_refused_after_the_browser_chose(x509, client_context, fake_qemu):
    browser = FakeBrowser(rfb.VERSION_3_8 + bytes((rfb.SECURITY_NONE,)))
    compute = fake_qemu(vencrypt_server(x509, subtypes=(rfb.VENCRYPT_X509_VNC,)))
    with pytest.raises(rfb.NegotiationError, match="without X509None"):
        rfb.negotiate(browser, compute, client_context, "localhost")
    # A failed SecurityResult, as the browser now expects one.
    assert bytes(browser.received[14:18]) == struct.pack("!I", 1)


def test_a_host_certificate_for_another_name_fails_the_tls_handshake(
    x509, client_context, fake_qemu
):
    def script(sock: socket.socket) -> None:
        with pytest.raises((ssl.SSLError, OSError, EOFError)):
            vencrypt_server(x509)(sock)

    browser = FakeBrowser(rfb.VERSION_3_8 + bytes((rfb.SECURITY_NONE,)))
    with pytest.raises(ssl.SSLCertVerificationError):
        rfb.negotiate(browser, fake_qemu(script), client_context, "hv-other.lab")


def test_a_client_speaking_an_older_rfb_is_refused(client_context, fake_qemu):
    def server(sock: socket.socket) -> None:
        sock.sendall(rfb.VERSION_3_8)
        recv_exact(sock, 12)

    browser = FakeBrowser(b"RFB 003.003\n")
    with pytest.raises(rfb.NegotiationError, match=r"not RFB 3\.8"):
        rfb.negotiate(browser, fake_qemu(server), client_context, "localhost")
