"""A loopback TCP proxy whose line can be cut: the chaos suite's stand-in for one host's
network. The host's agent reaches RabbitMQ through it; while it is cut, the host can neither
heartbeat nor hear of work, as when its network is down.

Cutting closes every connection under way, both sides, and from then on every new connection
is reset as soon as it is accepted, before a byte goes through, until the line is restored.
The listening socket stays open throughout, so the port stays the proxy's.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

#: Bytes read at a time from either side.
_CHUNK = 65536
#: How often the accepting thread checks whether the proxy is closing.
_ACCEPT_POLL_S = 0.2


class TcpProxy:
    """Forwards connections from 127.0.0.1:``port`` to ``upstream`` until :meth:`close`."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._upstream = upstream
        self._connect_timeout_s = connect_timeout_s
        self._listener = socket.create_server(listen, reuse_port=False)
        self._listener.settimeout(_ACCEPT_POLL_S)
        self._lock = threading.Lock()
        self._cut = False
        self._closing = threading.Event()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def is_cut(self) -> bool:
        with self._lock:
            return self._cut

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def live_connections(self) -> int:
        """Connections forwarded now."""
        with self._lock:
            return len(self._pairs)

    def forwarded(self) -> int:
        """Connections forwarded since the start (those reset while cut are not)."""
        with self._lock:
            return self._accepted

    def cut(self) -> None:
        """Close every connection under way and reset new ones until :meth:`restore`."""
        with self._lock:
            self._cut = True
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            _close_pair(pair)

    def restore(self) -> None:
        """Forward new connections again."""
        with self._lock:
            self._cut = False

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closing.set()
        self.cut()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closing.is_set():
                    return
                raise
            if self.is_cut or self._closing.is_set():
                _reset(client)
                continue
            threading.Thread(
                target=self._connect, args=(client,), name="tcp-proxy-connect", daemon=True
            ).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self._upstream, timeout=self._connect_timeout_s)
        except OSError:
            _reset(client)  # what the client would see from the upstream itself
            return
        server.settimeout(None)
        client.settimeout(None)
        pair = (client, server)
        with self._lock:
            if self._cut:
                cut_meanwhile = True
            else:
                cut_meanwhile = False
                self._pairs.add(pair)
                self._accepted += 1
        if cut_meanwhile:
            _reset(client)
            server.close()
            return
        for source, target in ((client, server), (server, client)):
            threading.Thread(
                target=self._pump, args=(pair, source, target), name="tcp-proxy-pump", daemon=True
            ).start()

    def _pump(
        self,
        pair: tuple[socket.socket, socket.socket],
        source: socket.socket,
        target: socket.socket,
    ) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
        _close_pair(pair)


def _close_pair(pair: tuple[socket.socket, socket.socket]) -> None:
    for sock in pair:
        # shutdown wakes the other pump thread, blocked in recv on the same socket.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a RST rather than a FIN: the peer sees the connection refused mid-way."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
