"""The RFB (VNC) security proxy: the browser speaks plain RFB to the proxy, the proxy speaks
VeNCrypt with TLS to QEMU.

noVNC cannot present a client certificate, and the hop to the host must not be plain text, so
the proxy stands in the middle of the security handshake (RFC 6143 section 7.1; VeNCrypt as
QEMU implements it):

1. ProtocolVersion: both sides must speak 3.8, which every client and QEMU since 2008 do.
2. Security: QEMU lists its types; the proxy requires VeNCrypt (19) and offers the browser
   only None (1), since the proxy already authenticated it by its token.
3. VeNCrypt 0.2: the proxy picks the subtype X509None (260), starts TLS with its client
   certificate, and checks QEMU's certificate against Kubenova's CA and the host's name.
4. From there QEMU's SecurityResult, and everything after it, is relayed unchanged over TLS.

X509Vnc (261), which QEMU offers when the display also has a VNC password, is refused: the
password is not something the proxy holds, and the client certificate already authenticates.
Hand-written because websockify has no security proxy; Nova's is the model
(nova/console/securityproxy/rfb.py).
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from typing import Final, Protocol

LOG = logging.getLogger(__name__)

VERSION_3_8: Final = b"RFB 003.008\n"
VERSION_LENGTH: Final = 12
SECURITY_NONE: Final = 1
SECURITY_VENCRYPT: Final = 19
VENCRYPT_VERSION: Final = b"\x00\x02"
VENCRYPT_X509_NONE: Final = 260
VENCRYPT_X509_VNC: Final = 261
# Longer failure reasons from a server are cut: they only go to a log and a browser.
_MAX_REASON: Final = 1024


class NegotiationError(Exception):
    """The security handshake failed; the message says at which step and why."""


class Stream(Protocol):
    """What the negotiation needs of either side: exact reads and whole writes."""

    def recv_exact(self, count: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...


class SocketStream:
    """A plain socket as a :class:`Stream`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv_exact(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise NegotiationError(
                    f"the VNC server closed the connection after {len(data)} of {count} bytes"
                )
            data += chunk
        return bytes(data)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)


def _fail_tenant(tenant: Stream, message: str, *, chose: bool) -> None:
    """Tell the browser why, as RFB 3.8 lets a server do (noVNC shows the reason): an empty
    list of security types before the client chose one, a failed SecurityResult after."""
    reason = message.encode("utf-8")[:_MAX_REASON]
    status = struct.pack("!I", 1) if chose else b"\x00"
    try:
        tenant.sendall(status + struct.pack("!I", len(reason)) + reason)
    except OSError:
        LOG.debug("could not tell the client why the security handshake failed")


def _versions(tenant: Stream, compute: SocketStream) -> None:
    server_version = compute.recv_exact(VERSION_LENGTH)
    if server_version != VERSION_3_8:
        raise NegotiationError(f"the VNC server speaks {server_version!r}, not RFB 3.8")
    compute.sendall(VERSION_3_8)
    tenant.sendall(VERSION_3_8)
    client_version = tenant.recv_exact(VERSION_LENGTH)
    if client_version != VERSION_3_8:
        raise NegotiationError(f"the client speaks {client_version!r}, not RFB 3.8")


def _server_security_types(compute: SocketStream) -> list[int]:
    (count,) = compute.recv_exact(1)
    if count == 0:
        (length,) = struct.unpack("!I", compute.recv_exact(4))
        reason = compute.recv_exact(min(length, _MAX_REASON)).decode("utf-8", "replace")
        raise NegotiationError(f"the VNC server refused the connection: {reason}")
    return list(compute.recv_exact(count))


def _tenant_chooses_none(tenant: Stream) -> None:
    tenant.sendall(bytes((1, SECURITY_NONE)))
    (choice,) = tenant.recv_exact(1)
    if choice != SECURITY_NONE:
        raise NegotiationError(f"the client chose security type {choice}, not None (1)")


def _vencrypt_x509_none(compute: SocketStream) -> None:
    compute.sendall(bytes((SECURITY_VENCRYPT,)))
    version = compute.recv_exact(2)
    if version != VENCRYPT_VERSION:
        raise NegotiationError(f"the VNC server speaks VeNCrypt {version.hex()}, not 0.2")
    compute.sendall(VENCRYPT_VERSION)
    (status,) = compute.recv_exact(1)
    if status != 0:
        raise NegotiationError("the VNC server refused VeNCrypt 0.2")
    (count,) = compute.recv_exact(1)
    subtypes = struct.unpack(f"!{count}I", compute.recv_exact(4 * count))
    if VENCRYPT_X509_NONE not in subtypes:
        raise NegotiationError(
            f"the VNC server offers VeNCrypt subtypes {list(subtypes)}, without X509None "
            f"({VENCRYPT_X509_NONE}); a display with a VNC password (X509Vnc) is not supported"
        )
    compute.sendall(struct.pack("!I", VENCRYPT_X509_NONE))
    # Not in the VeNCrypt notes, but QEMU and gtk-vnc send it: 1 accepts the subtype.
    (accepted,) = compute.recv_exact(1)
    if accepted != 1:
        raise NegotiationError("the VNC server did not accept the X509None subtype")


def negotiate(
    tenant: Stream,
    compute: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str,
) -> ssl.SSLSocket:
    """Run the security handshake between the browser (``tenant``) and QEMU (``compute``);
    return the TLS socket to QEMU to relay the rest over.

    Raises :class:`NegotiationError` (after telling the browser why, when it can) or
    ``ssl.SSLError`` when QEMU's certificate does not verify. ``context`` holds the proxy's
    client certificate and the CA bundle; ``server_hostname`` must be in QEMU's certificate.
    """
    plain = SocketStream(compute)
    chose = False
    try:
        _versions(tenant, plain)
        types = _server_security_types(plain)
        if SECURITY_VENCRYPT not in types:
            raise NegotiationError(
                f"the VNC server offers security types {types}, without VeNCrypt "
                f"({SECURITY_VENCRYPT}); the proxy speaks to QEMU over TLS only"
            )
        _tenant_chooses_none(tenant)
        chose = True
        _vencrypt_x509_none(plain)
        secured = context.wrap_socket(compute, server_hostname=server_hostname)
    except (NegotiationError, ssl.SSLError) as failed:
        _fail_tenant(
            tenant, f"the console's host could not be reached securely: {failed}", chose=chose
        )
        raise
    LOG.info("VeNCrypt X509None with %s: TLS %s", server_hostname, secured.version())
    return secured


def client_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """The TLS client side of the hop to QEMU (VNC and SPICE): the proxy's certificate, and
    hosts verified against Kubenova's CA bundle, host name included."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.load_cert_chain(cert_file, key_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
