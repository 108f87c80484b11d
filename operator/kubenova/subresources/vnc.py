"""``GET instances/{name}/vnc`` (websocket): the guest's VNC as a plain RFB server whose only
security type is None, for a native viewer on the user's machine (``kubectl nova vnc NAME``).

The user was authenticated and authorized by the kube-apiserver (RBAC ``get`` on
``instances/vnc``), so no console token is involved. The road: the Instance object → its
record (host, ``vnc_port``) → a TCP connection to the host's QEMU → the security handshake of
the console proxy (:func:`kubenova.console.proxy.rfb.negotiate`: VeNCrypt X509None, TLS with
the proxy's client certificate, QEMU's certificate checked against Kubenova's CA and the host
name), all before the websocket upgrade, so that an unreachable host or a failed handshake is
a 503 the user reads. The opener then answers the viewer's half of the handshake itself (RFB
3.8, security None) and relays the rest, QEMU's SecurityResult first, unchanged.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Final

from kubenova.console import auth
from kubenova.console.proxy import rfb
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from kubenova.subresources import consoleurl, discovery, requestheader, status, streams

LOG = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S: Final = 10.0
# The viewer's handshake waits for a person starting a viewer; after this long nobody is coming.
_VIEWER_TIMEOUT_S: Final = 300.0

Connect = Callable[[tuple[str, int], float], socket.socket]


class _AnsweringViewer:
    """The viewer's side of :func:`rfb.negotiate`, answered in advance (RFB 3.8, security
    None), so that the hop to QEMU is secured before the upgrade. What negotiate tells this
    stand-in is dropped: the real viewer hears the same from :func:`_greet`."""

    def __init__(self) -> None:
        self._answers = [rfb.VERSION_3_8, bytes((rfb.SECURITY_NONE,))]

    def recv_exact(self, count: int) -> bytes:
        if not self._answers or len(self._answers[0]) != count:
            raise rfb.NegotiationError(
                f"the handshake asked the viewer for {count} bytes unforeseen"
            )
        return self._answers.pop(0)

    def sendall(self, data: bytes) -> None:
        pass


class VncOpener:
    """The :class:`streams.StreamOpener` of ``instances/vnc``. ``client_context`` is asked
    for once per connection (a renewed certificate is taken up by the next one)."""

    def __init__(
        self,
        kube: consoleurl.InstanceReader,
        session_factory: db_engine.SessionFactory,
        client_context: Callable[[], ssl.SSLContext],
        *,
        read_place: consoleurl.PlaceReader = consoleurl.read_place,
        connect: Connect = socket.create_connection,
    ) -> None:
        self._kube = kube
        self._session_factory = session_factory
        self._client_context = client_context
        self._read_place = read_place
        self._connect = connect

    def open(self, namespace: str, name: str, user: requestheader.User) -> socket.socket:
        host, address, port = self._place(namespace, name)
        context = streams.client_context(self._client_context, "the hosts' VNC")
        try:
            plain = self._connect((address, port), _CONNECT_TIMEOUT_S)
        except OSError as failed:
            LOG.warning(
                "cannot reach the VNC of %s/%s at %s:%d: %s", namespace, name, address, port, failed
            )
            raise status.unavailable(
                f'the VNC console of instance "{name}" on host {host} is unreachable: {failed}'
            ) from failed
        try:
            plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            secured = rfb.negotiate(_AnsweringViewer(), plain, context, host)
        except (rfb.NegotiationError, ssl.SSLError, OSError) as failed:
            streams.close_quietly(plain)
            LOG.warning("VNC of %s/%s on %s: %s", namespace, name, host, failed)
            raise status.unavailable(
                f'the VNC console of instance "{name}" on host {host} could not be reached'
                f" securely: {failed}"
            ) from failed
        secured.settimeout(None)
        ours, theirs = socket.socketpair()
        LOG.info("VNC of %s/%s on %s:%d for user %s", namespace, name, host, port, user.name)
        threading.Thread(
            target=_serve_viewer,
            args=(theirs, secured, f"{namespace}/{name}"),
            name=f"vnc-{namespace}/{name}",
            daemon=True,
        ).start()
        return ours

    def _place(self, namespace: str, name: str) -> tuple[str, str, int]:
        """The host's name (which its certificate carries), its address, and the port."""
        _, place = consoleurl.locate(
            self._kube, self._read_place, self._session_factory, namespace, name
        )
        host, port, _ = consoleurl.target(place, auth.ConsoleType.NOVNC, name)
        return host, place.address, port


def stream_subresources(
    request_headers: requestheader.ConfigSource,
    kube: consoleurl.InstanceReader,
    session_factory: db_engine.SessionFactory,
    x509: proxy_settings.ProxySettings,
) -> streams.Streams:
    """The server's websocket subresources: ``vnc``, through the console proxy's client
    certificate and CA bundle (``x509.x509_dir``, read for each connection)."""

    def client_context() -> ssl.SSLContext:
        return rfb.client_context(
            str(x509.ca_file), str(x509.client_cert_file), str(x509.client_key_file)
        )

    opener = VncOpener(kube, session_factory, client_context)
    return streams.Streams(request_headers, {discovery.VNC.name: opener})


def _serve_viewer(viewer: socket.socket, secured: ssl.SSLSocket, label: str) -> None:
    try:
        if _greet(viewer):
            _pump(viewer, secured)
    except OSError as failed:
        LOG.info("VNC of %s ended: %s", label, failed)
    finally:
        streams.close_quietly(viewer)
        streams.close_quietly(secured)
        LOG.info("VNC of %s closed", label)


def _greet(viewer: socket.socket) -> bool:
    """The server's half of RFB 3.8 up to the viewer's choice of security None; False (after
    telling the viewer why, as RFB 3.8 lets a server) when the viewer wants something else."""
    viewer.settimeout(_VIEWER_TIMEOUT_S)
    stream = rfb.SocketStream(viewer)
    viewer.sendall(rfb.VERSION_3_8)
    try:
        version = stream.recv_exact(rfb.VERSION_LENGTH)
        if version != rfb.VERSION_3_8:
            _refuse(viewer, f"this server speaks RFB 3.8 only, not {version!r}", chose=False)
            return False
        viewer.sendall(bytes((1, rfb.SECURITY_NONE)))
        (choice,) = stream.recv_exact(1)
    except rfb.NegotiationError:
        return False
    if choice != rfb.SECURITY_NONE:
        _refuse(viewer, f"security type {choice} is not offered: choose None (1)", chose=True)
        return False
    viewer.settimeout(None)
    return True


def _refuse(viewer: socket.socket, reason: str, *, chose: bool) -> None:
    encoded = reason.encode()
    head = struct.pack("!I", 1) if chose else b"\x00"
    viewer.sendall(head + struct.pack("!I", len(encoded)) + encoded)


def _pump(viewer: socket.socket, secured: ssl.SSLSocket) -> None:
    """Copy bytes both ways until a side closes. The TLS side is read without blocking: a
    readable TLS socket may hold records that carry no data (TLS 1.3 session tickets)."""
    while True:
        waiting = secured.pending() > 0
        readable, _, _ = select.select([viewer, secured], [], [], 0.0 if waiting else None)
        if viewer in readable:
            data = viewer.recv(streams.BUFFER_SIZE)
            if not data:
                return
            secured.sendall(data)
        if secured in readable or waiting:
            secured.setblocking(False)
            try:
                data = secured.recv(streams.BUFFER_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            finally:
                secured.setblocking(True)
            if not data:
                return
            viewer.sendall(data)
