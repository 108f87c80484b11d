"""The HTTP(S) transport of the EC2 API: the standard library's threading server.

Every request gets a request id (EC2's ``requestId``, also in the log lines of the request) and
is answered by :func:`dispatch.handle`, which never raises. TLS uses :mod:`kubenova.tls_http`,
so a slow client's handshake holds up only its own thread.
"""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from kubenova import log, tls_http
from kubenova.ec2 import auth, dispatch

LOG = logging.getLogger(__name__)

#: The largest request body: RunInstances with 64 KiB of user data, base64-encoded, and more.
MAX_BODY = 256 * 1024
_CONNECTION_TIMEOUT_S = 30.0


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class _Serving:
    """What the handler reads from its server, HTTP or HTTPS."""

    service: dispatch.Service


class Ec2HttpServer(http.server.ThreadingHTTPServer, _Serving):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: dispatch.Service) -> None:
        self.service = service
        super().__init__(address, _HttpHandler)

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port


class Ec2TlsServer(tls_http.TLSServer, _Serving):
    label = "ec2-api"

    def __init__(
        self,
        address: tuple[str, int],
        service: dispatch.Service,
        context: ssl.SSLContext | Callable[[], ssl.SSLContext],
    ) -> None:
        self.service = service
        self.context = context
        super().__init__(address, _TlsHandler)

    def tls_context(self) -> ssl.SSLContext:
        return self.context if isinstance(self.context, ssl.SSLContext) else self.context()


class _Ec2Requests(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _CONNECTION_TIMEOUT_S
    server: Any

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        request_id = str(uuid.uuid4())
        with log.request_context(request_id):
            started = time.monotonic()
            body = self._body()
            if body is None:
                self._send(
                    dispatch.Answer(413, b"", error_code="RequestEntityTooLarge"), request_id
                )
                return
            request = auth.Request(method, self.path, list(self.headers.items()), body)
            answer = dispatch.handle(self.server.service, request, request_id)
            self._send(answer, request_id)
            LOG.info(
                "%s %s in %s: %d %s (%.0f ms)",
                method,
                answer.action or "-",
                answer.namespace or "-",
                answer.status,
                answer.error_code or "OK",
                (time.monotonic() - started) * 1000,
            )

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, answer: dispatch.Answer, request_id: str) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", "text/xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("x-amzn-RequestId", request_id)
        if answer.status == 413:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("ec2-api: %s %s", self.address_string(), format % args)


class _HttpHandler(_Ec2Requests):
    pass


class _TlsHandler(_Ec2Requests, tls_http.TLSHandler):
    timeout = _CONNECTION_TIMEOUT_S


def serve_in_thread(server: http.server.HTTPServer) -> threading.Thread:
    """Serve ``server`` from a daemon thread (for tests and embedding)."""
    thread = threading.Thread(target=server.serve_forever, name="ec2-api", daemon=True)
    thread.start()
    return thread
