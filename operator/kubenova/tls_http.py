"""An HTTPS server from the standard library whose TLS handshake runs in each connection's own
thread, so that a slow or silent client never holds up the thread that accepts the others.

The base of the agent-credentials endpoint and of the console subresources: a subclass says
which TLS context a new connection gets (:meth:`TLSServer.tls_context`, asked once per
connection, so a renewed certificate is taken up by the next one) and names itself in the log.
"""

from __future__ import annotations

import http.server
import logging
import ssl
from typing import Any

LOG = logging.getLogger(__name__)


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    #: What the server is called in its log lines.
    label = "https"

    def tls_context(self) -> ssl.SSLContext:
        """The context a new connection is wrapped with."""
        raise NotImplementedError

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        try:
            wrapped = self.tls_context().wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        except Exception as exc:
            sock.close()
            LOG.exception("%s: no TLS context for a new connection", self.label)
            # socketserver drops a connection on OSError and keeps serving; anything else
            # would end serve_forever.
            raise OSError(f"no TLS context: {exc}") from exc
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Mostly clients that hang up or fail the handshake (an untrusted certificate): not
        # worth a traceback above info.
        LOG.info("%s: connection from %s failed", self.label, client_address[0], exc_info=True)

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class TLSHandler(http.server.BaseHTTPRequestHandler):
    """Finishes the TLS handshake in the connection's thread, within ``timeout`` seconds."""

    request: ssl.SSLSocket
    timeout = 10.0
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def read_body(self, max_bytes: int) -> bytes | None:
        """The request's body, or None when it is larger than ``max_bytes``, its length is not
        a number, or the client stopped sending before its end."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if not 0 <= length <= max_bytes:
            return None
        body = self.rfile.read(length)
        return body if len(body) == length else None

    def drain_body(self, max_bytes: int) -> bool:
        """Read and drop the request's body, so that the connection can carry the next request
        (and a close does not reset it before the client has read the answer); False when
        the body is larger than ``max_bytes`` or its length is not a number."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return False
        if not 0 <= length <= max_bytes:
            return False
        while length > 0:
            chunk = self.rfile.read(min(length, 16384))
            if not chunk:
                break
            length -= len(chunk)
        return True
