"""The HTTPS transport of the subresource API: the standard library's threading server.

TLS asks every client for a certificate and verifies one that is offered against the
request-header CA; a client without one still connects (the kubelet's health probes), and
:mod:`kubenova.subresources.requestheader` refuses it everything but the health checks.
When that CA changes (:mod:`kubenova.subresources.requestheader_provider`), new connections get
a context with the new one, and each request on an older connection asks ``peer_trust``
whether its certificate is still vouched for. The handshake runs in the connection's own
thread, so a slow client never holds up the others, and so does a websocket relay
(:mod:`kubenova.subresources.streams`), for as long as it lasts.
"""

from __future__ import annotations

import json
import logging
import pathlib
import ssl
import threading
from collections.abc import Callable
from typing import Any

from kubenova import tls_http
from kubenova.subresources import app as app_mod
from kubenova.subresources import status, streams

LOG = logging.getLogger(__name__)

# A consoleurl request needs no body; more than this is not a kube-apiserver's proxying.
_MAX_BODY = 64 * 1024
# A connection that has not finished its handshake or request by then is dropped.
_CONNECTION_TIMEOUT_S = 30.0


def tls_context(
    cert_file: pathlib.Path, key_file: pathlib.Path, client_ca_pem: str
) -> ssl.SSLContext:
    """The serving context: our certificate, and the request-header CA for client
    certificates, which are asked for but optional."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=client_ca_pem)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class SubresourceServer(tls_http.TLSServer):
    label = "subresources"
    #: The websocket subresources (instances/vnc) and their openers; None serves none.
    stream_subresources: streams.Streams | None = None
    #: Whether a connection's verified client certificate is still trusted (the request-header
    #: CA may have changed since its handshake); None: the CA never changes.
    peer_trust: Callable[[ssl.SSLSocket], bool] | None = None

    def __init__(
        self,
        address: tuple[str, int],
        app: app_mod.App,
        context: ssl.SSLContext | Callable[[], ssl.SSLContext],
    ) -> None:
        self.app = app
        # A context, or what gives the current one (a renewed certificate's, once its files
        # changed: kubenova.certs.reloading).
        self.context = context
        super().__init__(address, _Handler)

    def tls_context(self) -> ssl.SSLContext:
        return self.context if isinstance(self.context, ssl.SSLContext) else self.context()


class _Handler(tls_http.TLSHandler):
    server: SubresourceServer
    timeout = _CONNECTION_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        self._serve("PUT")

    def do_PATCH(self) -> None:  # noqa: N802 - http.server's name
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802 - http.server's name
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        if not self.drain_body(_MAX_BODY):
            self._send(app_mod.Answer(413, {"kind": "Status", "code": 413}))
            return
        peer_cert = self._trusted_peer_cert()
        subresources = self.server.stream_subresources
        if subresources is not None and subresources.serves(method, self.path):
            self._serve_stream(subresources, peer_cert)
            return
        self._send(self.server.app.handle(method, self.path, peer_cert, self.headers))

    def _trusted_peer_cert(self) -> dict[str, Any] | None:
        """The verified client certificate, or None once the request-header CA that verified
        it is no longer trusted: authentication then refuses the request as anyone's, and the
        refusal closes the connection, so the client's next one meets the current CA."""
        peer_cert = self.request.getpeercert()
        trust = self.server.peer_trust
        if peer_cert and trust is not None and not trust(self.request):
            LOG.warning(
                "subresources: %s holds a client certificate of a request-header CA no longer"
                " trusted; refusing its requests",
                self.address_string(),
            )
            return None
        return peer_cert

    def _serve_stream(
        self, subresources: streams.Streams, peer_cert: dict[str, Any] | None
    ) -> None:
        """Refuse as a Status, or upgrade to a websocket and relay until a side closes."""
        path = self.path.split("?", 1)[0]
        try:
            target = subresources.open(self.path, peer_cert, self.headers)
        except status.ApiError as refused:
            self._send(app_mod.Answer(refused.code, refused.body()))
            return
        except Exception:
            LOG.exception("GET %s failed", path)
            self._send(app_mod.Answer(500, status.internal("internal error").body()))
            return
        try:
            ws = streams.ServerWebSocket(self)
            ws.accept(self.request, self.headers)
            # Nothing follows a websocket on this connection; the relay may idle for hours.
            self.close_connection = True
            self.request.settimeout(None)
            closed_by = streams.relay(ws, target)
            LOG.info("GET %s: the stream ended, closed by the %s", path, closed_by)
        except OSError as failed:
            LOG.info("GET %s: the stream broke: %s", path, failed)
        finally:
            streams.close_quietly(target)

    def _send(self, answer: app_mod.Answer) -> None:
        if isinstance(answer.body, str):
            payload, content_type = answer.body.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(answer.body).encode(), "application/json"
        self.send_response(answer.code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if answer.secret:
            self.send_header("Cache-Control", "no-store")
        if answer.code >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("subresources: %s %s", self.address_string(), format % args)


def serve(
    app: app_mod.App,
    context: ssl.SSLContext | Callable[[], ssl.SSLContext],
    addr: str,
    port: int,
    stream_subresources: streams.Streams | None = None,
    peer_trust: Callable[[ssl.SSLSocket], bool] | None = None,
) -> SubresourceServer:
    """Serve ``app`` (and the websocket subresources) on ``addr:port`` from a daemon thread
    (port 0: any free port)."""
    server = SubresourceServer((addr, port), app, context)
    server.stream_subresources = stream_subresources
    server.peer_trust = peer_trust
    threading.Thread(target=server.serve_forever, name="subresources", daemon=True).start()
    LOG.info("serving %s on https://%s:%d", "subresources", addr, server.port)
    return server
