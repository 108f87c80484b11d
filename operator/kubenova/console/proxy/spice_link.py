"""The SPICE link interposer: the browser's spice-html5 links each channel without knowing the
guest's SPICE password, and the proxy answers the password part of the handshake for it.

SPICE asks no client certificate, so on a node's address only its password ("ticket",
:mod:`kubenova.console.spice_ticket`) keeps others out. The browser is already authenticated
by its console token, and a console URL can leak, so the browser must never hold the ticket:
the proxy stands in the middle of each channel's link handshake (spice-protocol's
``spice/protocol.h``; the server side is spice-server's ``reds.c``; all fields little-endian):

1. browser -> server: ``SpiceLinkHeader`` (magic ``REDQ``, major version 2, minor, size) and a
   ``SpiceLinkMess`` of ``size`` bytes with the browser's capabilities. Checked, forwarded.
2. server -> browser: ``SpiceLinkHeader`` and a ``SpiceLinkReply`` (an error code, the
   server's 1024-bit RSA public key, its capabilities). Forwarded; after an error, nothing
   more is interposed.
3. browser -> server: the authentication mechanism (a u32, when both sides have the
   ``PROTOCOL_AUTH_SELECTION`` capability: 1 for SPICE's ticket; SASL, 2, is refused), then the
   password encrypted with the server's key (RSA-OAEP with SHA-1 and MGF1-SHA-1, no label, of
   the password and a NUL byte; one key length, 128 bytes). The proxy drops the browser's
   encryption (of an empty or made-up password) and sends its own encryption of the ticket.
4. server -> browser: the link result (0: OK; 7: permission denied), relayed with the rest.

The key size and the OAEP parameters are spice-server's (``RSA_private_decrypt`` with
``RSA_PKCS1_OAEP_PADDING`` in ``reds_handle_ticket``) and spice-html5's (``rsa_encrypt`` in
``ticket.js``). Nothing reaches the server before the browser's link message has been checked
whole.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Final, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kubenova.console.proxy import rfb

LOG = logging.getLogger(__name__)

MAGIC: Final = b"REDQ"
MAJOR_VERSION: Final = 2
# SpiceLinkHeader: magic, major_version, minor_version, size.
HEADER: Final = struct.Struct("<4sIII")
# SpiceLinkMess: connection_id, channel_type, channel_id, num_common_caps, num_channel_caps,
# caps_offset (from the start of SpiceLinkMess).
LINK_MESS: Final = struct.Struct("<IBBIII")
# SpiceLinkReply: error, pub_key (SPICE_TICKET_PUBKEY_BYTES), num_common_caps,
# num_channel_caps, caps_offset (from the start of SpiceLinkReply).
PUBKEY_BYTES: Final = 162
LINK_REPLY: Final = struct.Struct(f"<I{PUBKEY_BYTES}sIII")
U32: Final = struct.Struct("<I")
# Far above any real link message (a few dozen bytes): a larger one is not SPICE.
MAX_LINK_SIZE: Final = 4096
CAP_PROTOCOL_AUTH_SELECTION: Final = 0
AUTH_SPICE: Final = 1
AUTH_SASL: Final = 2
LINK_ERR_OK: Final = 0
LINK_ERR_PERMISSION_DENIED: Final = 7
# Websocket close codes (RFC 6455): the browser broke the rules, or the server did.
CLOSE_POLICY: Final = 1008
CLOSE_SERVER_ERROR: Final = 1011
# The server answers the link message at once; one that does not is not serving SPICE.
SERVER_TIMEOUT_S: Final = 10.0

# SHA-1 is SPICE's protocol, not a choice: spice-server decrypts with nothing else.
_OAEP: Final = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
)


class LinkError(Exception):
    """The link handshake failed; the message says why, ``close_code`` is for the browser's
    websocket (:data:`CLOSE_POLICY` for the browser's fault, :data:`CLOSE_SERVER_ERROR` for
    the server's)."""

    def __init__(self, message: str, close_code: int) -> None:
        super().__init__(message)
        self.close_code = close_code


class TenantStream(rfb.Stream, Protocol):
    """The browser's side (:class:`kubenova.console.proxy.tenant.WebSocketStream`)."""

    def leftover(self) -> bytes: ...


class _ServerStream:
    """The SPICE server's side: exact reads that fail with a :class:`LinkError`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv_exact(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            try:
                chunk = self.sock.recv(count - len(data))
            except TimeoutError:
                raise LinkError(
                    f"the SPICE server did not answer the link message within "
                    f"{SERVER_TIMEOUT_S:.0f} s",
                    CLOSE_SERVER_ERROR,
                ) from None
            if not chunk:
                raise LinkError(
                    f"the SPICE server closed the connection after {len(data)} of {count} bytes"
                    " of its link reply",
                    CLOSE_SERVER_ERROR,
                )
            data += chunk
        return bytes(data)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)


def _read_link(stream: rfb.Stream, who: str, minimum: int, close_code: int) -> bytes:
    """A SpiceLinkHeader and the message it announces, checked: header and message bytes."""
    header = stream.recv_exact(HEADER.size)
    magic, major, _minor, size = HEADER.unpack(header)
    if magic != MAGIC:
        raise LinkError(f"{who} does not speak SPICE (magic {magic!r}, not {MAGIC!r})", close_code)
    if major != MAJOR_VERSION:
        raise LinkError(f"{who} speaks SPICE protocol {major}, not {MAJOR_VERSION}", close_code)
    if not minimum <= size <= MAX_LINK_SIZE:
        raise LinkError(
            f"{who} announced a link message of {size} bytes, not {minimum}-{MAX_LINK_SIZE}",
            close_code,
        )
    return header + stream.recv_exact(size)


def _common_caps(
    message: bytes, num_common: int, num_channel: int, offset: int, who: str, close_code: int
) -> int:
    """The first word of common capabilities (0 when there are none), after checking that
    all the capabilities lie inside the message."""
    if offset + 4 * (num_common + num_channel) > len(message):
        raise LinkError(
            f"{who} announced {num_common + num_channel} capability words at offset {offset},"
            f" beyond its {len(message)}-byte link message",
            close_code,
        )
    if num_common == 0:
        return 0
    (caps,) = U32.unpack_from(message, offset)
    return int(caps)


def _has(caps: int, capability: int) -> bool:
    return bool(caps & (1 << capability))


def _public_key(der: bytes) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except ValueError as failed:
        raise LinkError(
            f"the SPICE server's public key cannot be read: {failed}", CLOSE_SERVER_ERROR
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise LinkError("the SPICE server's public key is not an RSA key", CLOSE_SERVER_ERROR)
    return key


def encrypt_ticket(public_key: rsa.RSAPublicKey, ticket: str) -> bytes:
    """``ticket`` as spice-server decrypts it: RSA-OAEP (SHA-1, MGF1-SHA-1, no label) of the
    password and the NUL that ends it in C."""
    return public_key.encrypt(ticket.encode() + b"\0", _OAEP)


def interpose(tenant: TenantStream, compute: socket.socket, ticket: str) -> None:
    """Run one channel's link handshake between the browser (``tenant``) and the SPICE server
    (``compute``, already over TLS), giving the server ``ticket`` in place of the browser's
    password. Returns once the server has the ticket (or refused the link), with whatever the
    browser sent beyond the handshake forwarded; the link result and everything after is the
    relay's.

    Raises :class:`LinkError`; whatever the browser sent after a part that failed its check
    is not forwarded.
    """
    server = _ServerStream(compute)
    client_link = _read_link(tenant, "the browser", LINK_MESS.size, CLOSE_POLICY)
    mess = client_link[HEADER.size :]
    _conn, channel_type, channel_id, num_common, num_channel, offset = LINK_MESS.unpack_from(mess)
    client_caps = _common_caps(mess, num_common, num_channel, offset, "the browser", CLOSE_POLICY)

    previous_timeout = compute.gettimeout()
    compute.settimeout(SERVER_TIMEOUT_S)
    try:
        compute.sendall(client_link)
        server_link = _read_link(server, "the SPICE server", U32.size, CLOSE_SERVER_ERROR)
    finally:
        compute.settimeout(previous_timeout)
    reply = server_link[HEADER.size :]
    (error,) = U32.unpack_from(reply)
    if error != LINK_ERR_OK:
        # The server refused the link itself (a channel it does not have, a version it does
        # not speak): the browser hears why and sends no password.
        LOG.info(
            "SPICE channel %s:%s: the server refused the link (%s)", channel_type, channel_id, error
        )
        tenant.sendall(server_link)
        _forward_leftover(tenant, compute)
        return
    if len(reply) < LINK_REPLY.size:
        raise LinkError(
            f"the SPICE server's link reply has {len(reply)} bytes, fewer than {LINK_REPLY.size}",
            CLOSE_SERVER_ERROR,
        )
    _error, der, num_common, num_channel, offset = LINK_REPLY.unpack_from(reply)
    server_caps = _common_caps(
        reply, num_common, num_channel, offset, "the SPICE server", CLOSE_SERVER_ERROR
    )
    public_key = _public_key(der)
    tenant.sendall(server_link)

    mechanism = b""
    if _has(client_caps, CAP_PROTOCOL_AUTH_SELECTION) and _has(
        server_caps, CAP_PROTOCOL_AUTH_SELECTION
    ):
        mechanism = tenant.recv_exact(U32.size)
        (chosen,) = U32.unpack(mechanism)
        if chosen == AUTH_SASL:
            raise LinkError(
                f"the browser asked for SASL authentication (mechanism {AUTH_SASL}); Kubenova's"
                " SPICE serves its ticket only",
                CLOSE_POLICY,
            )
        if chosen != AUTH_SPICE:
            raise LinkError(
                f"the browser asked for authentication mechanism {chosen}, not SPICE's ticket"
                f" ({AUTH_SPICE})",
                CLOSE_POLICY,
            )
    # The browser's own encryption, of a password it does not know: read and dropped.
    tenant.recv_exact((public_key.key_size + 7) // 8)
    compute.sendall(mechanism + encrypt_ticket(public_key, ticket))
    _forward_leftover(tenant, compute)
    LOG.info("SPICE channel %s:%s: the ticket was given to the server", channel_type, channel_id)


def _forward_leftover(tenant: TenantStream, compute: socket.socket) -> None:
    """Bytes the browser sent beyond the handshake belong to the server, after it."""
    leftover = tenant.leftover()
    if leftover:
        compute.sendall(leftover)
