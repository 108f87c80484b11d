"""Relaying between the browser's websocket and a TLS connection to the host.

websockify's own loop (``ProxyRequestHandler.do_proxy``) reads the target with a blocking
``recv`` whenever ``select`` says it is readable. A TLS target can be readable with records
that carry no data: TLS 1.3 servers send session tickets right after the handshake, and
SPICE's server says nothing until the client's first message. That blocking read then waits
for data that never comes while the browser's first message waits behind it. This loop reads
and writes the TLS side without blocking, and still uses websockify for the websocket side.
"""

from __future__ import annotations

import contextlib
import select
import ssl
from typing import Any, Protocol

BUFFER_SIZE = 65536
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)


class Closed(Exception):
    """One side closed; ``code`` and ``reason`` are for the websocket's close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class WebSocketSide(Protocol):
    """What the loop needs of websockify's request handler."""

    request: Any

    def recv_frames(self) -> tuple[list[bytes], Any]: ...

    def send_frames(self, bufs: list[bytes] | None = None) -> bool: ...


def relay(client: WebSocketSide, target: ssl.SSLSocket) -> None:
    """Copy bytes both ways until a side closes; raises :class:`Closed` saying which."""
    target.setblocking(False)
    to_target = bytearray()
    to_client: list[bytes] = []
    client_pending = False
    while True:
        wait_write = [target] if to_target else []
        if to_client or client_pending:
            wait_write.append(client.request)
        # Bytes already decrypted inside the TLS object are invisible to select().
        timeout = 0.0 if target.pending() else 1.0
        readable, writable, _ = select.select([client.request, target], wait_write, [], timeout)

        if to_client or (client_pending and client.request in writable):
            client_pending = client.send_frames(to_client)
            to_client = []

        if client.request in readable:
            frames, closed = client.recv_frames()
            for frame in frames:
                to_target += frame
            if closed:
                _flush(target, to_target)
                raise Closed(int(closed["code"] or 1000), str(closed["reason"] or ""))

        if to_target:
            # A full send buffer is retried on the next turn, with the same bytes in front.
            with contextlib.suppress(*_WOULD_BLOCK):
                del to_target[: target.send(to_target)]

        if target in readable or target.pending():
            try:
                data = target.recv(BUFFER_SIZE)
            except _WOULD_BLOCK:
                continue
            if not data:
                if to_client:
                    client.send_frames(to_client)
                raise Closed(1000, "the console's host closed the connection")
            to_client.append(data)


def _flush(target: ssl.SSLSocket, data: bytearray) -> None:
    """Send what the browser sent before it closed, waiting for room a second at a time."""
    while data:
        try:
            del data[: target.send(data)]
        except _WOULD_BLOCK:
            if not select.select([], [target], [], 1.0)[1]:
                return
