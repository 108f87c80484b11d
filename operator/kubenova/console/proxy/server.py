"""The console proxy's server: one thread per connection, TLS towards browsers when a serving
certificate is configured, and what websockify's handler expects to find on its server.

Threads rather than websockify's forking server: a console connection spends its life waiting
on two sockets, the database pool and the TLS contexts are shared, and the handler's state
stays in one process that tests can start and stop.
"""

from __future__ import annotations

import http.server
import logging
import socket
import socketserver
import ssl
import threading
from typing import Any

from kubenova.certs import reloading
from kubenova.console import auth
from kubenova.console.proxy import handler, rfb
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from kubenova.db import models

LOG = logging.getLogger(__name__)


def serving_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ConsoleProxyServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves the console pages and relays console websockets (see :mod:`handler`)."""

    daemon_threads = True
    allow_reuse_address = True

    # Read by websockify's handler: a web server with files and no directory listings, no
    # plugins (the checks are the handler's own), no recording, no heartbeat.
    only_upgrade = False
    file_only = True
    verbose = False
    daemon = False
    record = ""
    run_once = False
    handler_id = 0
    traffic = False
    web_auth = False
    host_token = False
    token_plugin = None
    auth_plugin = None
    heartbeat = None
    ssl_target = False
    unix_target = None
    unix_listen = None
    wrap_cmd = None
    target_host = None
    target_port = None

    def __init__(
        self,
        settings: proxy_settings.ProxySettings,
        session_factory: db_engine.SessionFactory,
        *,
        clock: auth.Clock = models.utcnow,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.clock = clock
        self.logger = logging.getLogger("kubenova.console.proxy.websockify")
        # Both contexts follow their files: the operator renews the certificates in their
        # Secrets and the kubelet swaps the mounted files, with no restart.
        self._client_contexts = reloading.ReloadingContext(
            lambda: rfb.client_context(
                str(settings.ca_file), str(settings.client_cert_file), str(settings.client_key_file)
            ),
            (settings.ca_file, settings.client_cert_file, settings.client_key_file),
        )
        self._serving_contexts: reloading.ReloadingContext | None = None
        cert_file, key_file = settings.tls_cert_file, settings.tls_key_file
        if cert_file is not None and key_file is not None:
            self._serving_contexts = reloading.ReloadingContext(
                lambda: serving_context(str(cert_file), str(key_file)), (cert_file, key_file)
            )
        super().__init__(
            (settings.listen_host, settings.listen_port), handler.ConsoleProxyRequestHandler
        )

    @property
    def client_context(self) -> ssl.SSLContext:
        """The TLS client side towards the hosts' QEMU, as its files are now."""
        return self._client_contexts.current()

    @property
    def port(self) -> int:
        """The port it listens on (the one the kernel chose, when the settings said 0)."""
        return int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self._serving_contexts is None:
            return sock, address
        # The handshake is left to the connection's own thread (handler.setup).
        return (
            self._serving_contexts.current().wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            ),
            address,
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.warning("connection from %s failed", client_address, exc_info=True)

    def start_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread until :meth:`shutdown` (for tests and embedding)."""
        thread = threading.Thread(target=self.serve_forever, name="kubenova-console", daemon=True)
        thread.start()
        return thread
