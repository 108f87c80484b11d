"""The request handler of ``kubenova-console``: websockify's ``ProxyRequestHandler`` with
Kubenova's checks in front, in Nova's order:

1. the token (:mod:`kubenova.console.auth`): spent by this request, or already spent by this
   browser session (:mod:`kubenova.console.proxy.session`); the database refuses a token that
   expired, whose instance was deleted or moved off the token's host, or that names another
   instance than the URL's ``instance``;
2. the Origin header (:mod:`kubenova.console.proxy.origin`), for websockets;
3. then the connection to the host, over TLS only: VeNCrypt for VNC
   (:mod:`kubenova.console.proxy.rfb`), TLS from the first byte for SPICE's tls-port, where
   the proxy gives each channel's link handshake the guest's SPICE password when it holds the
   key they are derived from (:mod:`kubenova.console.proxy.spice_link`); then relayed by
   :mod:`kubenova.console.proxy.relay`.

A page request that carries a token (``/vnc_lite.html?path=websockify%3Ftoken%3D...``) spends
it and sets the session cookie, so the page's websockets find the session; a websocket that
arrives first (a native client, a page loaded without its token) spends it the same way.
Other page requests (the scripts, the images) are static files from the web directory.
Refusals never reach the host: they are answered before the websocket upgrade.
"""

from __future__ import annotations

import contextlib
import http
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any
from urllib import parse

from websockify import websocketproxy

from kubenova.console import auth, spice_ticket
from kubenova.console.proxy import origin, refusals, relay, rfb, session, spice_link, tenant

if TYPE_CHECKING:
    from kubenova.console.proxy import server as proxy_server

LOG = logging.getLogger(__name__)

# A websocket close reason is at most 123 bytes (RFC 6455 section 5.5).
_MAX_CLOSE_REASON = 120
_CONNECT_TIMEOUT_S = 10.0


def query_parameters(path: str) -> dict[str, str]:
    """The request's query parameters, with those of a nested ``path`` parameter (noVNC's
    ``vnc_lite.html?path=websockify%3Ftoken%3D...``, Nova's URL form) added beneath them."""
    params = {k: v[0] for k, v in parse.parse_qs(parse.urlsplit(path).query).items() if v}
    nested = params.get("path")
    if nested:
        for key, value in query_parameters(nested).items():
            params.setdefault(key, value)
    return params


class ConsoleProxyRequestHandler(websocketproxy.ProxyRequestHandler):  # type: ignore[misc]
    server: proxy_server.ConsoleProxyServer

    def setup(self) -> None:
        # The TLS handshake runs here, in this connection's thread, so a slow client never
        # holds up the accepting thread.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(_CONNECT_TIMEOUT_S)
            self.request.do_handshake()
            self.request.settimeout(None)
        self._set_cookies: list[str] = []
        self._connection: auth.ConnectionInfo | None = None
        super().setup()

    # -- HTTP --------------------------------------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        # Console URLs carry a token: no page of the proxy passes its URL on.
        self.send_header("Referrer-Policy", "no-referrer")
        if "token" in query_parameters(self.path):
            # Nor may a cache keep such a page.
            self.send_header("Cache-Control", "no-store")
        for value in self._set_cookies:
            self.send_header("Set-Cookie", value)
        self._set_cookies = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if any(part.startswith(".") for part in parse.urlsplit(self.path).path.split("/")):
            # Dot files (the assets' install stamp, editors' leftovers) are not pages.
            self.send_error(http.HTTPStatus.NOT_FOUND)
            return
        token = query_parameters(self.path).get("token")
        if token is not None:
            try:
                self._admit(token)
            except refusals.ConsoleRefusedError as refused:
                self._refuse(refused)
                return
        # The handler's directory, not the process's working directory (websockify's choice).
        self.directory = str(self.server.settings.web_dir)
        super().do_GET()

    def list_directory(self, path: Any) -> None:
        self.send_error(http.HTTPStatus.NOT_FOUND)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the token; the log gets the path without the query.
        message = format % args
        path = getattr(self, "path", "")
        if path:
            message = message.replace(path, parse.urlsplit(path).path)
        LOG.info("%s %s", self.client_address[0], message)

    # -- the checks --------------------------------------------------------------------------

    def _admit(self, token: str) -> auth.ConnectionInfo:
        """Check the token for this browser session: spend it, or find it spent by this
        session. Raises :class:`refusals.ConsoleRefusedError`."""
        instance = query_parameters(self.path).get("instance")
        settings = self.server.settings
        known = session.from_cookie_header(self.headers.get("Cookie"), token)
        try:
            if known is not None:
                return auth.resume(
                    self.server.session_factory,
                    token,
                    known.digest,
                    instance,
                    clock=self.server.clock,
                )
            fresh = session.new_session()
            info = auth.authorize(
                self.server.session_factory,
                token,
                instance,
                console_session=fresh.digest,
                clock=self.server.clock,
            )
        except auth.ConsoleTokenRefusedError as refused:
            raise refusals.ConsoleRefusedError.from_token_refusal(refused) from refused
        except Exception as failed:
            # The database is down or out of date: the browser is told so, not left hanging.
            LOG.exception("cannot check a console token")
            raise refusals.ConsoleRefusedError(
                refusals.Reason.UNAVAILABLE, type(failed).__name__
            ) from failed
        self._set_cookies.append(
            session.set_cookie_header(
                token,
                fresh,
                expires=info.expires,
                now=self.server.clock(),
                secure=settings.secure_cookie,
            )
        )
        LOG.info(
            "console token of instance %s spent by a new session from %s",
            info.instance_uuid,
            self.client_address[0],
        )
        return info

    def _refuse(self, refused: refusals.ConsoleRefusedError) -> None:
        LOG.warning("%s from %s: %s", refused, self.client_address[0], refused.detail)
        self._set_cookies = []
        self.send_error(refused.status, str(refused))

    def validate_connection(self) -> None:
        """Runs before the websocket upgrade: every refusal is answered over plain HTTP."""
        token = query_parameters(self.path).get("token")
        if not token:
            raise refusals.ConsoleRefusedError(refusals.Reason.NO_TOKEN)
        info = self._admit(token)
        scheme = self.headers.get("X-Forwarded-Proto") or (
            "https" if self.server.settings.serves_tls else "http"
        )
        origin.check(
            self.headers.get("Origin"),
            host_header=self.headers.get("Host"),
            scheme=scheme,
            allowed_origins=self.server.settings.allowed_origins,
        )
        self._connection = info

    def handle_upgrade(self) -> None:
        try:
            super().handle_upgrade()
        except refusals.ConsoleRefusedError as refused:
            self._refuse(refused)

    # -- the websocket -----------------------------------------------------------------------

    def new_websocket_client(self) -> None:
        info = self._connection
        assert info is not None  # validate_connection set it before the upgrade
        if info.console_type is auth.ConsoleType.NOVNC:
            target = self._connect_vnc(info)
        elif info.console_type is auth.ConsoleType.SPICE_HTML5 and info.tls_port is not None:
            target = self._connect_spice(info, info.tls_port)
        else:
            raise self.CClose(1008, f"console refused ({refusals.Reason.NO_CONSOLE.value})")
        LOG.info(
            "console of instance %s: relaying to %s at %s (%s)",
            info.instance_uuid,
            info.host,
            info.address,
            info.console_type.value,
        )
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            relay.relay(self, target)
        except relay.Closed as closed:
            raise self.CClose(closed.code, closed.reason[:_MAX_CLOSE_REASON]) from None
        finally:
            _close(target)

    def _connect_vnc(self, info: auth.ConnectionInfo) -> ssl.SSLSocket:
        plain = self._connect(info.address, info.port)
        stream = tenant.WebSocketStream(self)
        try:
            secured = rfb.negotiate(stream, plain, self.server.client_context, info.host)
        except (rfb.NegotiationError, ssl.SSLError, OSError) as failed:
            LOG.warning("console of instance %s: %s", info.instance_uuid, failed)
            _close(plain)
            raise self.CClose(1011, str(failed)[:_MAX_CLOSE_REASON]) from failed
        leftover = stream.leftover()
        if leftover:
            secured.sendall(leftover)
        return secured

    def _connect_spice(self, info: auth.ConnectionInfo, port: int) -> ssl.SSLSocket:
        """SPICE's tls-port, with the channel linked by the guest's ticket when the proxy
        holds the key; without one, the browser's link handshake goes through as it is."""
        secured = self._connect_tls(info, port)
        key = self.server.settings.spice_ticket_key
        if key is None:
            return secured
        try:
            spice_link.interpose(
                tenant.WebSocketStream(self),
                secured,
                spice_ticket.ticket(key, info.instance_uuid),
            )
        except spice_link.LinkError as failed:
            LOG.warning("SPICE console of instance %s: %s", info.instance_uuid, failed)
            _close(secured)
            raise self.CClose(failed.close_code, str(failed)[:_MAX_CLOSE_REASON]) from failed
        except (rfb.NegotiationError, ssl.SSLError, OSError) as failed:
            # The browser left during the handshake, or the TLS connection failed.
            LOG.warning("SPICE console of instance %s: %s", info.instance_uuid, failed)
            _close(secured)
            raise self.CClose(1011, str(failed)[:_MAX_CLOSE_REASON]) from failed
        return secured

    def _connect_tls(self, info: auth.ConnectionInfo, port: int) -> ssl.SSLSocket:
        # Connected to the address, the host is checked by its name, which its certificate
        # carries whatever address the proxy reached it at.
        plain = self._connect(info.address, port)
        try:
            return self.server.client_context.wrap_socket(plain, server_hostname=info.host)
        except (ssl.SSLError, OSError) as failed:
            LOG.warning("TLS to %s at %s:%s failed: %s", info.host, info.address, port, failed)
            _close(plain)
            raise self.CClose(1011, str(failed)[:_MAX_CLOSE_REASON]) from failed

    def _connect(self, host: str, port: int) -> socket.socket:
        try:
            sock = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S)
        except OSError as failed:
            LOG.warning("cannot reach the console at %s:%s: %s", host, port, failed)
            raise self.CClose(1011, f"the console's host is unreachable: {failed}"[:120]) from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
