"""A fake spice-server and a browser that links as spice-html5 does, for the SPICE link
interposer's tests (:mod:`kubenova.console.proxy.spice_link`).

The server has a real 1024-bit RSA key, decrypts the ticket as spice-server's
``reds_handle_ticket`` does (RSA-OAEP with SHA-1) and answers 0 for its password and 7 for any
other, so a wrong encryption, a wrong ticket or the browser's own password all fail. The
browser (``spiceconn.js``) sends its link message, then its mechanism and its own encryption
of its password once it has the server's key.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kubenova.console import spice_ticket
from kubenova.console.proxy import rfb, spice_link

KEY = b"kubenova-spice-ticket-test-key-0123456789"
UUID = "0b7e3f6a-5c1d-4e2f-8a9b-1c2d3e4f5a6b"
TICKET = spice_ticket.ticket(KEY, UUID)
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
# SPICE_COMMON_CAP_*: PROTOCOL_AUTH_SELECTION 0, AUTH_SPICE 1, MINI_HEADER 3.
AUTH_SELECTION_CAP = 1 << 0
MINI_HEADER_CAP = 1 << 3
SERVER_CAPS = AUTH_SELECTION_CAP | (1 << 1) | MINI_HEADER_CAP
CHANNEL_MAIN = 1
LINK_ERR_CHANNEL_NOT_AVAILABLE = 9


def new_server_key() -> rsa.RSAPrivateKey:
    """A key of the size spice-server makes for each link (SPICE_TICKET_KEY_PAIR_LENGTH)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def link_header(size: int, magic: bytes = b"REDQ", major: int = 2) -> bytes:
    return magic + struct.pack("<III", major, 2, size)


def link_message(common_caps: list[int], caps_offset: int = 18) -> bytes:
    """A SpiceLinkHeader and SpiceLinkMess for the main channel with those common caps."""
    mess = struct.pack("<IBBIII", 0, CHANNEL_MAIN, 0, len(common_caps), 0, caps_offset)
    mess += b"".join(struct.pack("<I", caps) for caps in common_caps)
    return link_header(len(mess)) + mess


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class FakeSpiceServer:
    """spice-server's side of one channel's link: records what it receives and what it
    decrypted, answers the ticket as ``reds_handle_ticket`` does."""

    def __init__(self, key: rsa.RSAPrivateKey, password: str, *, error: int = 0) -> None:
        self.key = key
        self.password = password
        self.error = error
        self.received = bytearray()
        self.mechanism: int | None = None
        self.decrypted: bytes | None = None
        self.after_ticket = bytearray()

    def _recv(self, sock: socket.socket, count: int) -> bytes:
        data = recv_exact(sock, count)
        self.received += data
        return data

    def reply(self) -> bytes:
        if self.error:
            # reds_send_link_error: the error, no key, no caps.
            body = struct.pack("<I162sIII", self.error, b"", 0, 0, 178)
            return link_header(len(body)) + body
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert len(der) == 162  # SPICE_TICKET_PUBKEY_BYTES
        body = struct.pack("<I162sIII", 0, der, 1, 0, 178) + struct.pack("<I", SERVER_CAPS)
        return link_header(len(body)) + body

    def serve(self, sock: socket.socket) -> None:
        # The proxy may close at any point: what it sent by then is in self.received.
        with contextlib.suppress(EOFError, ConnectionResetError):
            self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        _magic, _major, _minor, size = struct.unpack("<4sIII", self._recv(sock, 16))
        mess = self._recv(sock, size)
        num_common, _num_channel, offset = struct.unpack_from("<III", mess, 6)
        client_caps = struct.unpack_from("<I", mess, offset)[0] if num_common else 0
        sock.sendall(self.reply())
        if self.error:
            self._recv(sock, 1)  # nothing more is expected: only EOF
            return
        if client_caps & AUTH_SELECTION_CAP:
            (self.mechanism,) = struct.unpack("<I", self._recv(sock, 4))
        encrypted = self._recv(sock, 128)
        try:
            self.decrypted = self.key.decrypt(encrypted, OAEP)
        except ValueError:
            self.decrypted = None
        granted = self.decrypted == self.password.encode() + b"\0"
        sock.sendall(struct.pack("<I", 0 if granted else 7))
        while chunk := sock.recv(4096):
            self.after_ticket += chunk


class SpiceHtml5:
    """The browser's side as spice-html5 speaks it (``spiceconn.js``): its link message in
    one websocket message; once the server's reply is in, the mechanism and its own RSA-OAEP
    encryption of its password (the page's, often empty) and a NUL, then ``then``."""

    def __init__(
        self,
        password: str = "",
        *,
        auth_selection: bool = True,
        mechanism: int = spice_link.AUTH_SPICE,
        then: bytes = b"",
        first: bytes | None = None,
    ) -> None:
        caps = MINI_HEADER_CAP | (AUTH_SELECTION_CAP if auth_selection else 0)
        self.inbox = bytearray(link_message([caps]) if first is None else first)
        self.password = password
        self.auth_selection = auth_selection
        self.mechanism = mechanism
        self.then = then
        self.received = bytearray()

    def recv_exact(self, count: int) -> bytes:
        if len(self.inbox) < count:
            raise rfb.NegotiationError("the browser closed the websocket during the handshake")
        data = bytes(self.inbox[:count])
        del self.inbox[:count]
        return data

    def sendall(self, data: bytes) -> None:
        self.received += data
        if len(self.received) < 16 + 178:
            return
        (error,) = struct.unpack_from("<I", self.received, 16)
        if error:
            return  # spice-html5 reports the error and sends nothing more
        der = bytes(self.received[20 : 20 + 162])
        public_key = serialization.load_der_public_key(der)
        assert isinstance(public_key, rsa.RSAPublicKey)
        mechanism = struct.pack("<I", self.mechanism) if self.auth_selection else b""
        encrypted = public_key.encrypt(self.password.encode() + b"\0", OAEP)
        self.inbox += mechanism + encrypted + self.then

    def leftover(self) -> bytes:
        data = bytes(self.inbox)
        self.inbox.clear()
        return data
