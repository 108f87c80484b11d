"""``POST /agent-credentials`` and ``POST /host-certificate`` over HTTPS: the standard
library's server, in a thread.

A credentials request's body is drained and ignored: what the caller may have is decided by its
token alone (``exchange``). A host certificate request's body is the agent's PEM signing
request, of which only the key is used (``host_certificates``). The serving certificate is
issued from Kubenova's CA (or through cert-manager, when it issues) for the operator Service's
names at start, and issued again once two thirds of its life have passed; each connection
takes the certificate current when it was accepted. The TLS handshake runs in the
connection's own thread, so a slow or silent client never holds up the others.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import ssl
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

from kubenova import tls_http
from kubenova.agent_credentials import exchange as exchange_mod
from kubenova.agent_credentials import host_certificates
from kubenova.certs import authority
from kubenova.rpc import envelope

LOG = logging.getLogger(__name__)

PATH = "/agent-credentials"
# A credentials request has no body worth reading and a signing request is under 2 KiB; more
# than this is not an agent's.
_MAX_BODY = 64 * 1024
# A connection that has not finished its handshake or request by then is dropped.
_CONNECTION_TIMEOUT_S = 10.0
# A request id the caller sent is kept if it looks like one (it goes into the logs).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,80}$")


# Issues a serving certificate for the DNS names at the time given (from Kubenova's CA, or
# through cert-manager: kubenova.agent_credentials.cert_manager_signer).
IssuePair = Callable[[Sequence[str], datetime.datetime], authority.KeyPair]
# After a renewal that failed, the certificate still valid is served this long before the
# next attempt, so that connections do not each wait on an issuer that is away.
_RETRY_AFTER = datetime.timedelta(minutes=1)


class ServingCertificate:
    """The server's TLS context, with a certificate for ``dns_names`` issued from ``ca`` (a
    CA's pair, or a function that issues one)."""

    def __init__(
        self,
        ca: authority.KeyPair | IssuePair,
        dns_names: Sequence[str],
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._issue: IssuePair = _from_ca(ca) if isinstance(ca, authority.KeyPair) else ca
        self._dns_names = tuple(dns_names)
        self._now = now
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._renew_at: datetime.datetime | None = None
        self._not_after: datetime.datetime | None = None

    def context(self) -> ssl.SSLContext:
        with self._lock:
            now = self._now()
            if self._context is None or self._renew_at is None or now >= self._renew_at:
                try:
                    pair = self._issue(self._dns_names, now)
                except Exception:
                    if self._context is None or self._not_after is None or now >= self._not_after:
                        raise
                    LOG.warning(
                        "could not renew the agent credentials' serving certificate; serving"
                        " the current one (valid until %s) and trying again in %s",
                        self._not_after.isoformat(),
                        _RETRY_AFTER,
                        exc_info=True,
                    )
                    self._renew_at = now + _RETRY_AFTER
                    return self._context
                self._context = _server_context(pair)
                self._renew_at = pair.not_before + (pair.not_after - pair.not_before) * 2 / 3
                self._not_after = pair.not_after
                LOG.info(
                    "serving agent credentials with a certificate for %s valid until %s",
                    ", ".join(self._dns_names),
                    pair.not_after.isoformat(),
                )
            return self._context


def _from_ca(ca: authority.KeyPair) -> IssuePair:
    def issue(dns_names: Sequence[str], now: datetime.datetime) -> authority.KeyPair:
        return authority.issue_server_cert(ca, dns_names, now=now)

    return issue


def _server_context(pair: authority.KeyPair) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The ssl module loads keys from files only; these live for the call, mode 0600.
    with tempfile.TemporaryDirectory(prefix="kubenova-tls-") as directory:
        cert_path = os.path.join(directory, "tls.crt")
        key_path = os.path.join(directory, "tls.key")
        for path, data in ((cert_path, pair.cert_pem()), (key_path, pair.key_pem())):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(cert_path, key_path)
    return context


class CredentialsServer(tls_http.TLSServer):
    label = "agent credentials"

    def __init__(
        self,
        address: tuple[str, int],
        exchange: exchange_mod.Exchange,
        certificate: ServingCertificate,
    ) -> None:
        self.exchange = exchange
        self.certificate = certificate
        super().__init__(address, _Handler)

    def tls_context(self) -> ssl.SSLContext:
        return self.certificate.context()


class _Handler(tls_http.TLSHandler):
    server: CredentialsServer
    timeout = _CONNECTION_TIMEOUT_S

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        request_id = self.headers.get("X-Request-Id", "")
        if not _REQUEST_ID.match(request_id):
            request_id = envelope.new_request_id()
        path = self.path.split("?", 1)[0]
        if path == host_certificates.PATH:
            self._host_certificate(request_id)
            return
        if path != PATH:
            self._send(
                404,
                {"reason": f"not found: POST {PATH} or {host_certificates.PATH}"},
                request_id=request_id,
            )
            return
        if not self.drain_body(_MAX_BODY):
            self._send(413, {"reason": "the request needs no body"}, request_id=request_id)
            return
        answer = self.server.exchange.handle(self.headers.get("Authorization"), request_id)
        self._send(answer.status, answer.body)

    def _host_certificate(self, request_id: str) -> None:
        body = self.read_body(_MAX_BODY)
        if body is None:
            self._send(
                413,
                {"reason": f"a signing request is under {_MAX_BODY} bytes, with Content-Length"},
                request_id=request_id,
            )
            return
        answer = self.server.exchange.handle_host_certificate(
            self.headers.get("Authorization"), body, request_id
        )
        self._send(answer.status, answer.body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._send(405, {"reason": f"use POST {PATH}"}, {"Allow": "POST"})

    def _send(
        self,
        status: int,
        body: dict[str, str],
        headers: dict[str, str] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        if request_id is not None:
            body = {**body, "requestId": request_id}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        # The answer may hold a password: no cache anywhere keeps it.
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        if "requestId" in body:
            self.send_header("X-Request-Id", body["requestId"])
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # The exchange logs every issue and refusal with its request id; the access log
        # would only repeat it.
        pass


def serve(
    exchange: exchange_mod.Exchange, certificate: ServingCertificate, addr: str, port: int
) -> CredentialsServer:
    """Serve ``exchange`` on ``addr:port`` from a daemon thread (port 0: any free port)."""
    certificate.context()  # a CA that cannot sign fails here, not at the first agent
    server = CredentialsServer((addr, port), exchange, certificate)
    threading.Thread(target=server.serve_forever, name="agent-credentials", daemon=True).start()
    LOG.info(
        "serving agent credentials on https://%s:%d%s",
        addr,
        server.port,
        PATH,
        extra={"agent_credentials_port": server.port},
    )
    return server
