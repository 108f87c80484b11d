"""The vnc opener: the Instance's record decides where, the hop to QEMU is VeNCrypt/TLS with
the proxy's client certificate (a fake QEMU that checks it here; a real one in
tests/e2e/test_vnc_stream.py), and the viewer meets a plain RFB 3.8 server with security None."""

from __future__ import annotations

import pathlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova.console.proxy import rfb
from kubenova.subresources import consoleurl, requestheader, status, vnc
from tests.support import console_pki
from tests.unit.subresources import support

ALICE = requestheader.User("alice")
HOST = "localhost"


@pytest.fixture(scope="module")
def ca() -> authority.KeyPair:
    return authority.issue_ca("console-ca")


@pytest.fixture
def client_files(ca: authority.KeyPair, tmp_path: pathlib.Path) -> tuple[str, str, str]:
    x509_dir = console_pki.write_proxy_x509_dir(tmp_path, ca)
    return (
        str(x509_dir / console_certs.CA_FILE),
        str(x509_dir / console_certs.CLIENT_CERT_FILE),
        str(x509_dir / console_certs.CLIENT_KEY_FILE),
    )


def qemu_context(ca: authority.KeyPair, tmp_path: pathlib.Path) -> ssl.SSLContext:
    """QEMU's side: the host's certificate, and a client certificate required (verify-peer)."""
    host = console_certs.issue_host_cert(ca, HOST, ["127.0.0.1"])
    cert, key = support.write_pair(tmp_path, "host", host)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=ca.cert_pem().decode())
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def recv_exact(sock: Any, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def fake_qemu(sock: socket.socket, context: ssl.SSLContext, types: bytes = b"\x13") -> None:
    """QEMU's VeNCrypt X509None, then SecurityResult OK over TLS, then ``qemu:`` + each chunk."""
    try:
        sock.sendall(rfb.VERSION_3_8)
        assert recv_exact(sock, 12) == rfb.VERSION_3_8
        sock.sendall(bytes((len(types),)) + types)
        if rfb.SECURITY_VENCRYPT not in types:
            return
        assert recv_exact(sock, 1) == bytes((rfb.SECURITY_VENCRYPT,))
        sock.sendall(rfb.VENCRYPT_VERSION)
        assert recv_exact(sock, 2) == rfb.VENCRYPT_VERSION
        sock.sendall(b"\x00\x01" + struct.pack("!I", rfb.VENCRYPT_X509_NONE))
        assert struct.unpack("!I", recv_exact(sock, 4)) == (rfb.VENCRYPT_X509_NONE,)
        sock.sendall(b"\x01")
        with context.wrap_socket(sock, server_side=True) as tls:
            tls.sendall(struct.pack("!I", 0))
            while data := tls.recv(4096):
                tls.sendall(b"qemu:" + data)
    except (OSError, EOFError, AssertionError):
        pass
    finally:
        sock.close()


class Connector:
    """Stands in for socket.create_connection: connects to a loopback port where a fake QEMU
    serves, whatever the address; remembers where it was asked to connect."""

    def __init__(self, serve: Callable[[socket.socket], None] | None) -> None:
        self.serve = serve
        self.asked: list[tuple[tuple[str, int], float]] = []

    def __call__(self, address: tuple[str, int], timeout: float) -> socket.socket:
        self.asked.append((address, timeout))
        if self.serve is None:
            raise ConnectionRefusedError(111, "Connection refused")
        serve = self.serve
        listener = socket.create_server(("127.0.0.1", 0))

        def accept_one() -> None:
            with listener:
                serve(listener.accept()[0])

        threading.Thread(target=accept_one, daemon=True).start()
        return socket.create_connection(listener.getsockname(), timeout)


def opener(
    connect: Connector,
    files: tuple[str, str, str],
    found: consoleurl.ConsolePlace | None = None,
    kube: support.FakeKube | None = None,
) -> vnc.VncOpener:
    return vnc.VncOpener(
        kube or support.FakeKube(support.instance_object()),
        None,  # type: ignore[arg-type]  # the stand-ins never touch a database
        lambda: rfb.client_context(*files),
        read_place=lambda _factory, _uuid: found,
        connect=connect,
    )


@pytest.fixture
def viewer(
    ca: authority.KeyPair, tmp_path: pathlib.Path, client_files: tuple[str, str, str]
) -> Iterator[tuple[socket.socket, Connector]]:
    context = qemu_context(ca, tmp_path)
    connect = Connector(lambda sock: fake_qemu(sock, context))
    sock = opener(connect, client_files, support.place(host=HOST, vnc_port=5907)).open(
        "demo", "web-1", ALICE
    )
    sock.settimeout(10)
    try:
        yield sock, connect
    finally:
        sock.close()


def test_the_viewer_meets_rfb_3_8_with_security_none_and_then_qemu(viewer) -> None:
    sock, connect = viewer

    assert recv_exact(sock, 12) == rfb.VERSION_3_8
    sock.sendall(rfb.VERSION_3_8)
    assert recv_exact(sock, 2) == bytes((1, rfb.SECURITY_NONE))
    sock.sendall(bytes((rfb.SECURITY_NONE,)))
    # QEMU's own SecurityResult, which came over TLS.
    assert recv_exact(sock, 4) == struct.pack("!I", 0)
    sock.sendall(b"\x01")
    assert recv_exact(sock, 6) == b"qemu:\x01"
    assert connect.asked == [((HOST, 5907), 10.0)]


def test_a_viewer_that_wants_another_security_type_is_told_why(viewer) -> None:
    sock, _ = viewer
    recv_exact(sock, 12)
    sock.sendall(rfb.VERSION_3_8)
    recv_exact(sock, 2)

    sock.sendall(b"\x02")  # VNC authentication

    result, length = struct.unpack("!II", recv_exact(sock, 8))
    assert result == 1
    assert b"choose None" in recv_exact(sock, length)


def test_a_viewer_of_another_rfb_version_is_told_why(viewer) -> None:
    sock, _ = viewer
    recv_exact(sock, 12)

    sock.sendall(b"RFB 003.003\n")

    assert recv_exact(sock, 1) == b"\x00"
    (length,) = struct.unpack("!I", recv_exact(sock, 4))
    assert b"RFB 3.8 only" in recv_exact(sock, length)


def test_a_host_that_cannot_be_reached_is_unavailable(client_files) -> None:
    with pytest.raises(status.ApiError) as refused:
        opener(Connector(None), client_files, support.place()).open("demo", "web-1", ALICE)

    assert refused.value.code == 503
    assert "compute-1 is unreachable" in refused.value.message


def test_a_vnc_server_without_vencrypt_is_unavailable_before_the_upgrade(
    ca, tmp_path, client_files
) -> None:
    context = qemu_context(ca, tmp_path)
    connect = Connector(lambda sock: fake_qemu(sock, context, types=b"\x01"))

    with pytest.raises(status.ApiError) as refused:
        opener(connect, client_files, support.place(host=HOST)).open("demo", "web-1", ALICE)

    assert refused.value.code == 503
    assert "without VeNCrypt" in refused.value.message


def test_a_host_certificate_of_another_ca_is_unavailable(tmp_path, client_files) -> None:
    context = qemu_context(authority.issue_ca("impostor-ca"), tmp_path)
    connect = Connector(lambda sock: fake_qemu(sock, context))

    with pytest.raises(status.ApiError) as refused:
        opener(connect, client_files, support.place(host=HOST)).open("demo", "web-1", ALICE)

    assert refused.value.code == 503
    assert "could not be reached securely" in refused.value.message
    assert "CERTIFICATE_VERIFY_FAILED" in refused.value.message


def test_without_the_client_certificate_the_server_says_which_it_needs(
    tmp_path, client_files
) -> None:
    missing = (client_files[0], str(tmp_path / "nope.pem"), client_files[2])
    connect = Connector(None)

    with pytest.raises(status.ApiError) as refused:
        opener(connect, missing, support.place()).open("demo", "web-1", ALICE)

    assert refused.value.code == 503
    assert "KUBENOVA_CONSOLE_X509_DIR" in refused.value.message
    assert connect.asked == []


def test_a_missing_instance_is_not_found(client_files) -> None:
    connect = Connector(None)

    with pytest.raises(status.ApiError) as refused:
        opener(connect, client_files, support.place()).open("demo", "nope", ALICE)

    assert refused.value.code == 404
    assert refused.value.message == (
        'instances.compute.kubenova.io "nope" not found in namespace "demo"'
    )
    assert connect.asked == []


@pytest.mark.parametrize(
    ("found", "words"),
    [
        (None, "has no record yet"),
        (support.place(vm_state="stopped", power_state="shutdown"), "is not running"),
        (support.place(vnc_port=None), "has no VNC console yet"),
    ],
)
def test_an_instance_without_a_vnc_console_now_is_a_conflict(client_files, found, words) -> None:
    connect = Connector(None)

    with pytest.raises(status.ApiError) as refused:
        opener(connect, client_files, found).open("demo", "web-1", ALICE)

    assert refused.value.code == 409
    assert words in refused.value.message
    assert connect.asked == []
