"""``GET instances/{name}/console`` (websocket): the guest's serial console, interactive
(``kubectl nova console NAME``).

The road: the Instance object → its record (the host) → TLS to the host's serial console
server (:mod:`kubenova_agent.serial_console`, on ``KUBENOVA_SERIAL_CONSOLE_PORT``, the same
port on every host) with the console proxy's client certificate, the host's certificate checked
against Kubenova's CA and the host's name, as the VNC hop is → the request line (the
instance's uuid) and the server's answer, all before the websocket upgrade, so that each
refusal is a Status the user reads: 404 no such Instance, 409 not running or not on a host, or
a guest with no interactive console (one started with a file serial port), or one that another
client holds; 503 the host's console server unreachable.

Why one port on every host rather than a port each host reports: the host's name is already
how the hosts' consoles are reached (VNC and SPICE), and its certificate names it; a port that
never changes needs no message, no column and nothing to keep up to date after a live
migration, which only changes the host.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

from kubenova.compute import states
from kubenova.console.proxy import rfb
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from kubenova.subresources import consoleurl, discovery, requestheader, status, streams

LOG = logging.getLogger(__name__)

#: The hosts' serial console port unless ``KUBENOVA_SERIAL_CONSOLE_PORT`` says otherwise (the
#: agent's default, ``kubenova_agent.serial_console.DEFAULT_PORT``).
DEFAULT_PORT: Final = 6083
_CONNECT_TIMEOUT_S: Final = 10.0
_ANSWER_TIMEOUT_S: Final = 10.0
_MAX_ANSWER: Final = 1024

Connect = Callable[[tuple[str, int], float], socket.socket]


class SerialConsoleOpener:
    """The :class:`streams.StreamOpener` of ``instances/console``. ``client_context`` is asked
    for once per connection (a renewed certificate is taken up by the next one)."""

    def __init__(
        self,
        kube: consoleurl.InstanceReader,
        session_factory: db_engine.SessionFactory,
        client_context: Callable[[], ssl.SSLContext],
        port: int = DEFAULT_PORT,
        *,
        read_place: consoleurl.PlaceReader = consoleurl.read_place,
        connect: Connect = socket.create_connection,
    ) -> None:
        self._kube = kube
        self._session_factory = session_factory
        self._client_context = client_context
        self._port = port
        self._read_place = read_place
        self._connect = connect

    def open(self, namespace: str, name: str, user: requestheader.User) -> socket.socket:
        place = self._place(namespace, name)
        host = place.host or ""
        where = f"{place.address}:{self._port}"
        context = streams.client_context(self._client_context, "the hosts' serial consoles")
        try:
            plain = self._connect((place.address, self._port), _CONNECT_TIMEOUT_S)
        except OSError as failed:
            LOG.warning(
                "cannot reach the serial console server of %s at %s: %s", host, where, failed
            )
            raise status.unavailable(
                f"the serial console server of host {host} at {where} is unreachable: {failed}"
                " (is the host's agent running?)"
            ) from failed
        try:
            plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            secured = context.wrap_socket(plain, server_hostname=host)
            secured.settimeout(_ANSWER_TIMEOUT_S)
            secured.sendall(f"{place.uuid}\n".encode())
            answer = _read_line(secured)
        except (ssl.SSLError, OSError) as failed:
            streams.close_quietly(plain)
            LOG.warning("serial console of %s/%s on %s: %s", namespace, name, where, failed)
            raise status.unavailable(
                f"the serial console server of host {host} at {where} could not be reached"
                f" securely: {failed}"
            ) from failed
        if answer.strip() != "OK":
            streams.close_quietly(secured)
            raise _refusal(answer, name, host, where)
        secured.settimeout(None)
        LOG.info("serial console of %s/%s on %s for user %s", namespace, name, where, user.name)
        return secured

    def _place(self, namespace: str, name: str) -> consoleurl.ConsolePlace:
        _, place = consoleurl.locate(
            self._kube, self._read_place, self._session_factory, namespace, name
        )
        if place.power_state != states.RUNNING:
            raise status.conflict(
                f'instance "{name}" is not running (vm_state {place.vm_state}, power_state'
                f" {place.power_state}): a serial console needs a running guest",
                name=name,
            )
        if not place.host:
            raise status.conflict(f'instance "{name}" has no host', name=name)
        return place


def _read_line(sock: ssl.SSLSocket) -> str:
    """The server's answer line, byte by byte: what follows it is the guest's."""
    line = bytearray()
    while len(line) < _MAX_ANSWER and not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line.decode(errors="replace")


def _refusal(answer: str, name: str, host: str, where: str) -> status.ApiError:
    """The Status for the server's ``ERROR <reason> <message>`` line (503 for anything else,
    the server having answered something it should not)."""
    word, _, rest = answer.strip().partition(" ")
    reason, _, message = rest.partition(" ")
    if word == "ERROR" and reason == "unknown_instance":
        return status.conflict(
            f'instance "{name}" is not on host {host} (it may be moving): {message}', name=name
        )
    if word == "ERROR" and reason in ("no_console", "busy"):
        return status.conflict(f'instance "{name}": {message}', name=name)
    LOG.warning("serial console server at %s answered %r", where, answer[:200])
    return status.unavailable(
        f"the serial console server of host {host} at {where} refused the connection:"
        f" {answer.strip() or 'it closed without answering'}"
    )


class _WithConsole(streams.Streams):
    """``base``'s stream subresources and ``instances/console``."""

    def __init__(
        self,
        base: streams.Streams,
        request_headers: requestheader.ConfigSource,
        openers: Mapping[str, streams.StreamOpener],
    ) -> None:
        super().__init__(request_headers, openers)
        self._base = base

    def serves(self, method: str, target: str) -> bool:
        return super().serves(method, target) or self._base.serves(method, target)

    def open(
        self, target: str, peer_cert: Mapping[str, Any] | None, headers: requestheader.Headers
    ) -> socket.socket:
        if super().serves("GET", target):
            return super().open(target, peer_cert, headers)
        return self._base.open(target, peer_cert, headers)


def with_console(
    base: streams.Streams,
    request_headers: requestheader.ConfigSource,
    kube: consoleurl.InstanceReader,
    session_factory: db_engine.SessionFactory,
    x509: proxy_settings.ProxySettings,
    port: int = DEFAULT_PORT,
) -> streams.Streams:
    """``base`` with ``instances/console`` added, through the console proxy's client
    certificate and CA bundle (``x509.x509_dir``, read for each connection)."""

    def client_context() -> ssl.SSLContext:
        return rfb.client_context(
            str(x509.ca_file), str(x509.client_cert_file), str(x509.client_key_file)
        )

    opener = SerialConsoleOpener(kube, session_factory, client_context, port)
    return _WithConsole(base, request_headers, {discovery.CONSOLE.name: opener})
