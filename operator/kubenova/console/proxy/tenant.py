"""The browser's side of a websocket as a byte stream, for the RFB security handshake.

websockify hands a handler whole websocket messages; the handshake reads fields of a few bytes
that a client may split or join across messages as it likes.
"""

from __future__ import annotations

from typing import Any, Protocol

from kubenova.console.proxy import rfb


class FrameHandler(Protocol):
    """What websockify's request handler offers for its websocket's messages."""

    def recv_frames(self) -> tuple[list[bytes], Any]: ...

    def send_frames(self, bufs: list[bytes] | None = None) -> bool: ...


class WebSocketStream:
    """Reads exact byte counts from a websocket's messages and keeps what was read beyond
    them for :meth:`leftover`."""

    def __init__(self, handler: FrameHandler) -> None:
        self._handler = handler
        self._buffer = bytearray()

    def recv_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            frames, closed = self._handler.recv_frames()
            for frame in frames:
                self._buffer += frame
            if closed and len(self._buffer) < count:
                raise rfb.NegotiationError("the browser closed the websocket during the handshake")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def sendall(self, data: bytes) -> None:
        # The handler's socket blocks, so every message is sent whole before this returns.
        self._handler.send_frames([data])

    def leftover(self) -> bytes:
        """Bytes the browser sent beyond the handshake: they belong to the server."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data
