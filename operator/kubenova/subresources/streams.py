"""Subresources that are byte streams (``instances/vnc``): a websocket through the
kube-apiserver, relayed to a socket that an opener connects.

The kube-apiserver authenticates the user, authorizes ``get`` on ``instances/<name>`` with
RBAC and proxies the upgrade here with its front-proxy certificate and the user's headers.
Everything that can refuse is answered before the upgrade, as a ``Status`` that kubectl and
``kubectl nova`` print: the front-proxy check (401), a GET that is not a websocket upgrade
(400), then the opener's own refusals (404, 409, 503). Only then the server answers 101 and
relays binary messages both ways until a side closes.

A serial console is another :class:`StreamOpener` registered under ``console``. The
websocket's handshake and framing are websockify's (already the console proxy's server, so one
implementation of the server side serves both); it works on the request handler's own socket,
so the threading HTTPS server stays the standard library's.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from websockify import websocketserver

from kubenova.subresources import requestheader, routes, status

LOG = logging.getLogger(__name__)

#: The websocket subprotocol a client may ask for; a client that asks for none gets the same
#: plain byte stream (KubeVirt's ``plain.kubevirt.io`` works the same way).
SUBPROTOCOL: Final = "plain.kubenova.io"
BUFFER_SIZE: Final = 65536
# A websocket close reason is at most 123 bytes (RFC 6455 section 5.5).
_MAX_CLOSE_REASON: Final = 120
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)


class StreamOpener(Protocol):
    """Connects one subresource's byte stream for a user the kube-apiserver authorized."""

    def open(self, namespace: str, name: str, user: requestheader.User) -> socket.socket:
        """A connected socket carrying the stream; :class:`status.ApiError` (404, 409, 503)
        with a message for the user when there is none to give."""
        ...


class Streams:
    """The stream subresources a server relays, by subresource name."""

    def __init__(
        self,
        request_headers: requestheader.ConfigSource,
        openers: Mapping[str, StreamOpener],
    ) -> None:
        self._request_headers = request_headers
        self._openers = dict(openers)

    def serves(self, method: str, target: str) -> bool:
        """Whether ``method target`` is one of the stream subresources (any other path, or
        a bad one, is the app's to answer)."""
        if method != "GET":
            return False
        try:
            route = routes.resolve(target)
        except status.ApiError:
            return False
        return route.kind is routes.Kind.SUBRESOURCE and route.subresource in self._openers

    def open(
        self, target: str, peer_cert: Mapping[str, Any] | None, headers: requestheader.Headers
    ) -> socket.socket:
        """The connected stream of the request ``GET target``, checked in this order: the
        front-proxy certificate and user, the websocket upgrade, the opener. Raises
        :class:`status.ApiError` for each refusal."""
        route = routes.resolve(target)
        config = requestheader.resolve(self._request_headers)
        user = requestheader.authenticate(config, peer_cert, headers)
        check_upgrade(route.subresource, headers)
        opened = self._openers[route.subresource].open(route.namespace, route.name, user)
        LOG.info(
            "instances/%s of %s/%s opened for user %s",
            route.subresource,
            route.namespace,
            route.name,
            user.name,
        )
        return opened


def client_context(make: Callable[[], ssl.SSLContext], towards: str) -> ssl.SSLContext:
    """The TLS context of an opener's hop to the hosts (``towards``: "the hosts' VNC", say),
    made anew for each connection; 503 when this server has no client certificate."""
    try:
        return make()
    except (OSError, ssl.SSLError) as failed:
        LOG.error("no client certificate for the hop to %s: %s", towards, failed)
        raise status.unavailable(
            f"this server has no client certificate for {towards} (the console proxy's,"
            f" KUBENOVA_CONSOLE_X509_DIR): {failed}"
        ) from failed


def check_upgrade(subresource: str, headers: requestheader.Headers) -> None:
    """400 unless the request asks for a websocket the server can accept, so that nothing is
    opened for a request the upgrade would refuse."""
    upgrade = _header(headers, "Upgrade").lower()
    if upgrade != "websocket":
        raise status.bad_request(
            f"instances/{subresource} is a byte stream over a websocket: send GET with"
            " 'Upgrade: websocket' (kubectl nova vnc NAME does)"
        )
    if _header(headers, "Sec-WebSocket-Version") not in ("13", "8", "7"):
        raise status.bad_request("the websocket upgrade needs Sec-WebSocket-Version 13")
    if not _header(headers, "Sec-WebSocket-Key"):
        raise status.bad_request("the websocket upgrade has no Sec-WebSocket-Key")
    offered = [p.strip() for p in _header(headers, "Sec-WebSocket-Protocol").split(",")]
    offered = [p for p in offered if p]
    if offered and SUBPROTOCOL not in offered:
        raise status.bad_request(
            f"the websocket subprotocols {offered} are not served: ask for {SUBPROTOCOL}"
            " or for none"
        )


def _header(headers: requestheader.Headers, name: str) -> str:
    values = headers.get_all(name)
    return ",".join(str(v) for v in values).strip() if values else ""


class ServerWebSocket(websocketserver.HttpWebSocket):  # type: ignore[misc]
    """websockify's server side of the handshake, answering on the request handler, with
    :data:`SUBPROTOCOL` chosen when the client offers it."""

    def select_subprotocol(self, protocols: list[str]) -> str:
        # websockify requires the answer to be one of the raw, unstripped entries.
        for offered in protocols:
            if offered.strip() == SUBPROTOCOL:
                return offered
        return ""


class Closed(Exception):
    """The relay ended; ``reason`` says which side closed."""


def relay(ws: Any, target: socket.socket) -> str:
    """Copy the websocket's binary messages to ``target`` and what ``target`` sends back as
    binary messages, until a side closes; returns which one did. Blocking writes (a slow side
    holds up the other, as TCP would), reads only when ``select`` says there is something, and
    without blocking, since a readable TLS socket may hold records that carry no data."""
    try:
        while True:
            waiting = _pending(ws.socket) or _pending(target)
            readable, _, _ = select.select([ws.socket, target], [], [], 0.0 if waiting else None)
            if ws.socket in readable or _pending(ws.socket):
                for message in _receive(ws):
                    target.sendall(message)
            if target in readable or _pending(target):
                data = _read(target)
                if data == b"":
                    _close_websocket(ws, 1000, "the stream's target closed the connection")
                    return "target"
                if data:
                    _send(ws, data)
    except Closed:
        return "client"


def _pending(sock: Any) -> bool:
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def _read(sock: socket.socket) -> bytes | None:
    """What ``sock`` holds now: bytes, ``b""`` at its end, None when nothing was ready."""
    sock.setblocking(False)
    try:
        return sock.recv(BUFFER_SIZE)
    except _WOULD_BLOCK:
        return None
    except OSError:
        return b""
    finally:
        sock.setblocking(True)


def _receive(ws: Any) -> list[bytes]:
    """The messages the websocket holds now; raises :class:`Closed` when the client closed."""
    messages: list[bytes] = []
    ws.socket.setblocking(False)
    try:
        while True:
            try:
                message = ws.recvmsg()
            except _WOULD_BLOCK:
                # websockify's WantRead error is an ssl.SSLWantReadError: no whole message yet.
                return messages
            except OSError as failed:
                raise Closed(str(failed)) from failed
            if message is None:
                raise Closed(f"closed by the client ({ws.close_code})")
            messages.append(message)
            if not ws.pending():
                return messages
    finally:
        if ws.socket is not None:
            ws.socket.setblocking(True)


def _send(ws: Any, data: bytes) -> None:
    """Send one binary message whole; websockify wants the same bytes again after a partial
    write."""
    while True:
        try:
            ws.sendmsg(data)
            return
        except _WOULD_BLOCK:
            select.select([], [ws.socket], [], 1.0)


def _close_websocket(ws: Any, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        ws.close(code, reason[:_MAX_CLOSE_REASON])


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
