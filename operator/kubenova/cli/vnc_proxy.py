"""``kubectl nova vnc NAME``: the instance's VNC on a local port, for a native viewer.

Each TCP connection to the local port opens a websocket to the Instance's ``vnc`` subresource
through the kube-apiserver, with the kubeconfig's credentials, and relays bytes both ways; the
viewer sees a plain RFB 3.8 server with security None (the hop to the host is TLS, made by
``kubenova-subresources``). RBAC decides: ``get`` on ``instances/vnc`` in the group
``subresources.compute.kubenova.io``. One websocket is opened and closed before the port
listens, so that a refusal (403, 404, 409, 503) is printed, in kubectl's words, before anyone
connects; a refusal of a later connection is printed and that connection closed.

The websocket client is ``websocket-client``, through the ``kubernetes`` package's own
``stream.ws_client.create_websocket`` (which ``kubectl exec`` in Python uses): it takes the
kubeconfig's CA, client certificate, server name and proxy as the REST calls do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Final

import websocket
from kubernetes.client import exceptions as k8s_exceptions
from kubernetes.stream import ws_client

from kubenova.cli import kube
from kubenova.k8s.resources import INSTANCES, SUBRESOURCES_GROUP, SUBRESOURCES_VERSION

#: The subprotocol kubenova-subresources serves the plain byte stream on.
SUBPROTOCOL: Final = "plain.kubenova.io"
BUFFER_SIZE: Final = 65536
# How long one wait for the server's next message lasts before the loop looks at the viewer
# again: a readable TLS socket may hold records that carry no message.
_POLL_S: Final = 0.5
# How often the accept loop looks whether the viewer it started has exited.
_ACCEPT_POLL_S: Final = 0.5

#: Viewers tried in this order, with how each names a local port.
VIEWERS: Final[tuple[tuple[str, Callable[[str, int], list[str]]], ...]] = (
    ("vncviewer", lambda host, port: [f"{host}::{port}"]),
    ("remote-viewer", lambda host, port: [f"vnc://{host}:{port}"]),
)
_ANY_ADDRESS: Final = ("", "0.0.0.0", "::")


@dataclasses.dataclass(frozen=True)
class Target:
    """The websocket's URL and the headers that carry the user's credentials."""

    url: str
    headers: dict[str, str]


def target(cluster: kube.Cluster, name: str, subresource: str = "vnc") -> Target:
    """Where the websocket of the Instance's stream ``subresource`` (``vnc``, ``console``) is,
    with the user's credentials."""
    path = (
        f"/apis/{SUBRESOURCES_GROUP}/{SUBRESOURCES_VERSION}/namespaces/{cluster.namespace}"
        f"/{INSTANCES}/{name}/{subresource}"
    )
    # The generated client's own way to a request: the bearer token (a refreshed one, when the
    # kubeconfig's exec plugin or token file says so) lands in the headers.
    _, url, headers, _, _ = cluster.api.param_serialize(
        method="GET", resource_path=path, header_params={}, auth_settings=["BearerToken"]
    )
    lowered = {key.lower(): str(value) for key, value in (headers or {}).items()}
    carried = {"sec-websocket-protocol": SUBPROTOCOL}
    if "authorization" in lowered:
        carried["authorization"] = lowered["authorization"]
    return Target(ws_client.get_websocket_url(url), carried)  # type: ignore[no-untyped-call]


def open_stream(cluster: kube.Cluster, name: str) -> websocket.WebSocket:
    """A websocket carrying the instance's VNC; :class:`kube.CommandError` worded as kubectl
    words the server's refusal."""
    where = target(cluster, name)
    try:
        opened: websocket.WebSocket = ws_client.create_websocket(  # type: ignore[no-untyped-call]
            cluster.api.configuration, where.url, where.headers
        )
    except websocket.WebSocketBadStatusException as refused:
        raise kube.CommandError(describe_refusal(refused, cluster.server)) from None
    except (websocket.WebSocketException, OSError) as failed:
        raise kube.CommandError(kube.describe_error(failed, cluster.server)) from None
    return opened


def describe_refusal(refused: websocket.WebSocketBadStatusException, server: str) -> str:
    """The upgrade's refusal as kubectl prints a refused request: the ``Status`` message."""
    body = refused.resp_body or b""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    error = k8s_exceptions.ApiException(status=refused.status_code, reason=refused.status_message)
    error.body = text
    return kube.describe_error(error, server)


def relay(local: socket.socket, ws: websocket.WebSocket) -> str:
    """Copy bytes between the viewer's connection and the websocket until one closes; returns
    why it ended, for the user."""
    remote = ws.sock
    if remote is None:
        return "the websocket is closed"
    while True:
        waiting = isinstance(remote, ssl.SSLSocket) and remote.pending() > 0
        readable, _, _ = select.select([local, remote], [], [], 0.0 if waiting else None)
        if local in readable:
            data = local.recv(BUFFER_SIZE)
            if not data:
                return "the viewer closed the connection"
            ws.send_bytes(data)
        if remote in readable or waiting:
            ws.settimeout(_POLL_S)
            try:
                opcode, message = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException:
                return "the server closed the connection"
            finally:
                ws.settimeout(None)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                reason = bytes(message[2:]).decode(errors="replace")
                return f"the server closed the console: {reason}" if reason else "closed"
            local.sendall(bytes(message))


def viewer_command(
    address: str, port: int, which: Callable[[str], str | None] = shutil.which
) -> list[str]:
    """The first installed viewer's command line for the local port, or [] when none is."""
    host = "127.0.0.1" if address in _ANY_ADDRESS else address
    for program, arguments in VIEWERS:
        found = which(program)
        if found:
            return [found, *arguments(host, port)]
    return []


def _serve_connection(cluster: kube.Cluster, name: str, local: socket.socket) -> None:
    try:
        try:
            ws = open_stream(cluster, name)
        except kube.CommandError as refused:
            print(refused, file=sys.stderr, flush=True)
            return
        try:
            local.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            why = relay(local, ws)
        except (OSError, websocket.WebSocketException) as failed:
            why = str(failed)
        finally:
            with contextlib.suppress(Exception):
                ws.close()
            # close() does nothing once the server's close was answered; this closes the socket.
            ws.shutdown()  # type: ignore[no-untyped-call]
        print(f"connection closed: {why}", file=sys.stderr, flush=True)
    finally:
        local.close()


def run(cluster: kube.Cluster, name: str, address: str, port: int, proxy_only: bool) -> int:
    """Serve until Ctrl-C (exit 0), or until the viewer this started exits."""
    open_stream(cluster, name).close()
    try:
        listener = socket.create_server((address, port))
    except OSError as failed:
        raise kube.CommandError(f"error: cannot listen on {address}:{port}: {failed}") from None
    viewer: subprocess.Popen[bytes] | None = None
    try:
        bound = listener.getsockname()[1]
        print(f"listening on {address}:{bound} for a VNC viewer", flush=True)
        if not proxy_only:
            viewer = _start_viewer(address, bound)
        listener.settimeout(_ACCEPT_POLL_S)
        while viewer is None or viewer.poll() is None:
            try:
                local, _ = listener.accept()
            except TimeoutError:
                continue
            local.settimeout(None)
            threading.Thread(
                target=_serve_connection, args=(cluster, name, local), daemon=True
            ).start()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        listener.close()
        if viewer is not None and viewer.poll() is None:
            viewer.terminate()


def _start_viewer(address: str, port: int) -> subprocess.Popen[bytes] | None:
    command = viewer_command(address, port)
    if not command:
        names = " or ".join(program for program, _ in VIEWERS)
        print(
            f"no VNC viewer found ({names}): connect one to {address}:{port} yourself;"
            " Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        return None
    print(f"starting {' '.join(command)}", file=sys.stderr, flush=True)
    return subprocess.Popen(command)
