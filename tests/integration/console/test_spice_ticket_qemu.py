"""The SPICE link interposer against a real QEMU whose SPICE has the guest's ticket as its
password: spice-server grants the link the proxy answers with the ticket, and denies one
answered with another password, whether the client selects the mechanism or not. This is the
evidence that the RSA-OAEP parameters are spice-server's."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kubenova.console import spice_ticket
from kubenova.console.proxy import rfb, spice_link
from tests.integration.console.proxy_support import (
    HOST,
    X509,
    make_x509,
    qemu_binary,
    running_qemu,
)

pytestmark = pytest.mark.integration

# In this suite's range (16080-16099), apart from the ports proxy_support uses.
SPICE_TLS_PORT = 16092
KEY = b"kubenova-spice-ticket-test-key-0123456789"
UUID = "0b7e3f6a-5c1d-4e2f-8a9b-1c2d3e4f5a6b"
TICKET = spice_ticket.ticket(KEY, UUID)
AUTH_SELECTION_CAP = 1 << 0
MINI_HEADER_CAP = 1 << 3


@pytest.fixture(scope="module")
def x509(tmp_path_factory: pytest.TempPathFactory) -> X509:
    return make_x509(tmp_path_factory.mktemp("x509"))


@pytest.fixture(scope="module")
def spice_port(x509: X509, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A diskless QEMU whose SPICE serves TLS only, with :data:`TICKET` as its password."""
    log = tmp_path_factory.mktemp("qemu") / "qemu.log"
    command = [
        qemu_binary(),
        "-nodefaults",
        "-no-user-config",
        "-machine", "pc,accel=tcg",
        "-m", "32",
        "-vga", "std",
        "-display", "none",
        "-object", f"secret,id=spice-ticket,data={TICKET}",
        "-spice",
        f"addr=127.0.0.1,tls-port={SPICE_TLS_PORT},x509-dir={x509.host_dir},"
        "password-secret=spice-ticket",
    ]  # fmt: skip
    with running_qemu(command, log, (SPICE_TLS_PORT,)):
        yield SPICE_TLS_PORT


class SpiceClient:
    """A SPICE client's link as a tenant stream: its link message, then, once it read the
    server's reply, its mechanism (when it selects one) and its own encryption of an empty
    password, as spice-html5's page without a password sends it."""

    def __init__(self, *, auth_selection: bool) -> None:
        caps = MINI_HEADER_CAP | (AUTH_SELECTION_CAP if auth_selection else 0)
        mess = struct.pack("<IBBIII", 0, 1, 0, 1, 0, 18) + struct.pack("<I", caps)
        self.inbox = bytearray(b"REDQ" + struct.pack("<III", 2, 2, len(mess)) + mess)
        self.auth_selection = auth_selection
        self.received = bytearray()

    def recv_exact(self, count: int) -> bytes:
        assert len(self.inbox) >= count, "the proxy read more than the client sent"
        data = bytes(self.inbox[:count])
        del self.inbox[:count]
        return data

    def sendall(self, data: bytes) -> None:
        self.received += data
        public_key = serialization.load_der_public_key(bytes(self.received[20 : 20 + 162]))
        assert isinstance(public_key, rsa.RSAPublicKey)
        oaep = padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
        )
        mechanism = struct.pack("<I", spice_link.AUTH_SPICE) if self.auth_selection else b""
        self.inbox += mechanism + public_key.encrypt(b"\0", oaep)

    def leftover(self) -> bytes:
        data = bytes(self.inbox)
        self.inbox.clear()
        return data


def link(x509: X509, port: int, ticket: str, *, auth_selection: bool) -> int:
    """One main channel linked through the interposer with ``ticket``; QEMU's link result."""
    context = rfb.client_context(
        str(x509.proxy_dir / "ca-cert.pem"),
        str(x509.proxy_dir / "client-cert.pem"),
        str(x509.proxy_dir / "client-key.pem"),
    )
    plain = socket.create_connection(("127.0.0.1", port), timeout=10)
    with contextlib.closing(context.wrap_socket(plain, server_hostname=HOST)) as secured:
        spice_link.interpose(SpiceClient(auth_selection=auth_selection), secured, ticket)
        result = b""
        while len(result) < 4:
            chunk = secured.recv(4 - len(result))
            assert chunk, "QEMU closed the connection before its link result"
            result += chunk
    (code,) = struct.unpack("<I", result)
    return int(code)


@pytest.mark.parametrize("auth_selection", [True, False], ids=["auth-selection", "ticket-only"])
def test_qemu_grants_the_ticket_and_denies_another_password(
    x509: X509, spice_port: int, auth_selection: bool
) -> None:
    other = spice_ticket.ticket(KEY + b"!", UUID)

    assert link(x509, spice_port, TICKET, auth_selection=auth_selection) == 0
    assert link(x509, spice_port, other, auth_selection=auth_selection) == (
        spice_link.LINK_ERR_PERMISSION_DENIED
    )
