"""The host's serial console server: interactive guests' serial ports over TLS.

Each guest's first serial port is a unix socket QEMU listens on, ``console.sock`` in its
instance directory (:mod:`kubenova_agent.virt.libvirt.domain_xml`). This server, one TCP port
per host, lets a client that holds a certificate from the console CA (``kubenova-subresources``
with the console proxy's client certificate) reach one of them:

1. TLS, the client's certificate required and checked against ``ca-cert.pem``. The server's
   own certificate is the host's QEMU console certificate (``server-cert.pem``,
   ``server-key.pem``: the same directory as libvirt's ``vnc_tls_x509_cert_dir``), which names
   the host. A host's certificate is for serverAuth only, so it cannot pose as a client.
2. One request line, the instance's uuid: ``<uuid>\\n``.
3. One answer line: ``OK`` then the guest's bytes both ways until a side closes; or
   ``ERROR <reason> <message>`` and the connection closes. Reasons (:class:`Refusal`):
   ``bad_request``, ``unknown_instance`` (no such instance on this host), ``no_console`` (its
   guest runs with the old file serial port, or is not running), ``busy`` (another client has
   it: QEMU's socket serves one client at a time, and a second would wait unanswered).

Every connection has a thread of its own, as has the accept loop, so the agent's message lanes
and periodic tasks never wait on a console. The server never reads the database or libvirt:
the instance directory says all it needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import pathlib
import select
import socket
import socketserver
import ssl
import stat
import threading
from typing import Final

from kubenova.certs import reloading
from kubenova_agent.virt import driver
from kubenova_agent.virt.libvirt import domain_xml

LOG = logging.getLogger(__name__)

#: The default port, the same on every host (``kubenova-subresources`` assumes it too).
DEFAULT_PORT: Final = 6083
#: The host's QEMU console TLS directory by default: libvirt's ``vnc_tls_x509_cert_dir``.
DEFAULT_X509_DIR: Final = "/etc/pki/libvirt-vnc"
CA_FILE: Final = "ca-cert.pem"
SERVER_CERT_FILE: Final = "server-cert.pem"
SERVER_KEY_FILE: Final = "server-key.pem"

OK: Final = b"OK\n"
BUFFER_SIZE: Final = 65536
# A uuid and a newline, with room to spare; more is not a request.
_MAX_REQUEST: Final = 128
# A client that connects and says nothing is dropped after this long.
_REQUEST_TIMEOUT_S: Final = 10.0


class Refusal(enum.Enum):
    """Why a request was refused: the second word of the ``ERROR`` line."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_INSTANCE = "unknown_instance"
    NO_CONSOLE = "no_console"
    BUSY = "busy"


class Refused(Exception):
    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def line(self) -> bytes:
        """The one-line answer (no newline inside, whatever the message held)."""
        text = " ".join(self.message.split())
        return f"ERROR {self.reason.value} {text}\n".encode()


def parse_request(raw: bytes) -> str:
    """The instance uuid of a request line (its newline included); :class:`Refused` with
    ``bad_request`` for anything else."""
    if not raw.endswith(b"\n"):
        raise Refused(Refusal.BAD_REQUEST, "the request is one line ending in a newline")
    try:
        text = raw.decode("ascii").strip()
        return driver.validate_uuid(text)
    except (UnicodeDecodeError, ValueError):
        raise Refused(
            Refusal.BAD_REQUEST, f"the request must be an instance uuid, not {raw[:60]!r}"
        ) from None


def console_socket(instances_path: pathlib.Path, instance_uuid: str) -> str:
    """The path of the instance's console socket; :class:`Refused` when the instance has no
    directory here, or has one but no socket (an old guest's file serial port, or a guest that
    is not running)."""
    directory = instances_path / instance_uuid
    if not directory.is_dir():
        raise Refused(Refusal.UNKNOWN_INSTANCE, f"instance {instance_uuid} is not on this host")
    path = directory / domain_xml.CONSOLE_SOCKET
    try:
        is_socket = stat.S_ISSOCK(path.stat().st_mode)
    except FileNotFoundError:
        is_socket = False
    if not is_socket:
        raise Refused(
            Refusal.NO_CONSOLE,
            f"instance {instance_uuid} has no interactive serial console: its guest is not"
            " running, or was started before serial consoles were sockets (its serial port"
            " is a file; a stop and start gives it one)",
        )
    return str(path)


def server_context(x509_dir: pathlib.Path) -> ssl.SSLContext:
    """TLS with the host's console certificate, a client certificate from the CA required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(x509_dir / SERVER_CERT_FILE, x509_dir / SERVER_KEY_FILE)
    context.load_verify_locations(cafile=str(x509_dir / CA_FILE))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclasses.dataclass
class _InUse:
    """The instances that have a client now (one each)."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    uuids: set[str] = dataclasses.field(default_factory=set)

    def claim(self, instance_uuid: str) -> None:
        with self.lock:
            if instance_uuid in self.uuids:
                raise Refused(
                    Refusal.BUSY,
                    f"the serial console of instance {instance_uuid} is in use by another"
                    " client; try again once it has left",
                )
            self.uuids.add(instance_uuid)

    def release(self, instance_uuid: str) -> None:
        with self.lock:
            self.uuids.discard(instance_uuid)


class SerialConsoleServer(socketserver.ThreadingTCPServer):
    """See the module docstring. ``port`` 0 takes any free port (:attr:`port` says which)."""

    daemon_threads = True
    # An agent restarted at once must get its port back while old connections linger.
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        context: ssl.SSLContext | reloading.ReloadingContext,
        instances_path: pathlib.Path,
    ) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)
        self.context = context
        self.instances_path = instances_path
        self.in_use = _InUse()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> threading.Thread:
        """Serve on a daemon thread of its own."""
        thread = threading.Thread(target=self.serve_forever, name="serial-console", daemon=True)
        thread.start()
        LOG.info("serial consoles served on %s:%d over TLS", *self.server_address[:2])
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(socketserver.BaseRequestHandler):
    server: SerialConsoleServer

    def handle(self) -> None:
        plain: socket.socket = self.request
        address, port = plain.getpeername()[:2]
        peer = f"{address}:{port}"
        plain.settimeout(_REQUEST_TIMEOUT_S)
        try:
            context = self.server.context
            if isinstance(context, reloading.ReloadingContext):
                context = context.current()
            client = context.wrap_socket(plain, server_side=True)
        except (ssl.SSLError, OSError) as failed:
            LOG.warning("serial console: TLS with %s failed: %s", peer, failed)
            return
        try:
            self._serve(client, peer)
        finally:
            _close_quietly(client)

    def _serve(self, client: ssl.SSLSocket, peer: str) -> None:
        try:
            instance_uuid = parse_request(_read_line(client))
            path = console_socket(self.server.instances_path, instance_uuid)
            self.server.in_use.claim(instance_uuid)
        except Refused as refused:
            LOG.info("serial console: refused %s: %s", peer, refused.message)
            with contextlib.suppress(OSError):
                client.sendall(refused.line())
            return
        except OSError as failed:
            LOG.info("serial console: %s went away before asking: %s", peer, failed)
            return
        try:
            guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                guest.connect(path)
            except OSError as failed:
                guest.close()
                silent = Refused(
                    Refusal.NO_CONSOLE,
                    f"the serial console of instance {instance_uuid} does not answer: {failed}",
                )
                with contextlib.suppress(OSError):
                    client.sendall(silent.line())
                return
            LOG.info("serial console of %s opened for %s", instance_uuid, peer)
            try:
                client.settimeout(None)
                client.sendall(OK)
                _relay(client, guest)
            except OSError as failed:
                LOG.info("serial console of %s: %s", instance_uuid, failed)
            finally:
                _close_quietly(guest)
                LOG.info("serial console of %s closed for %s", instance_uuid, peer)
        finally:
            self.server.in_use.release(instance_uuid)


def _read_line(client: ssl.SSLSocket) -> bytes:
    """Bytes up to and including the first newline, byte by byte so that nothing the client
    sent after it is read here; at most :data:`_MAX_REQUEST`."""
    line = bytearray()
    while len(line) < _MAX_REQUEST:
        byte = client.recv(1)
        if not byte:
            break
        line += byte
        if byte == b"\n":
            break
    return bytes(line)


def _relay(client: ssl.SSLSocket, guest: socket.socket) -> None:
    """Copy bytes both ways until a side closes. The TLS side is read without blocking: a
    readable TLS socket may hold records that carry no data (TLS 1.3 session tickets)."""
    while True:
        waiting = client.pending() > 0
        readable, _, _ = select.select([client, guest], [], [], 0.0 if waiting else None)
        if guest in readable:
            data = guest.recv(BUFFER_SIZE)
            if not data:
                return
            client.sendall(data)
        if client in readable or waiting:
            client.setblocking(False)
            try:
                data = client.recv(BUFFER_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            finally:
                client.setblocking(True)
            if not data:
                return
            guest.sendall(data)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def start_from_settings(
    listen: str, port: int, x509_dir: str, instances_path: str
) -> SerialConsoleServer | None:
    """The running server of an agent's settings, or None (logged) when ``port`` is 0 or the
    host has no console certificate: the agent's other work goes on without it."""
    if port == 0:
        LOG.info("serial console server off (KUBENOVA_SERIAL_CONSOLE_PORT=0)")
        return None
    try:
        directory = pathlib.Path(x509_dir)
        # A renewed host certificate is served from the next connection on.
        context = reloading.ReloadingContext(
            lambda: server_context(directory),
            [directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE, directory / CA_FILE],
        )
        server = SerialConsoleServer((listen, port), context, pathlib.Path(instances_path))
    except (OSError, ssl.SSLError) as failed:
        LOG.error(
            "no serial console server on %s:%d (certificates in %s, KUBENOVA_SERIAL_CONSOLE_"
            "X509_DIR): %s",
            listen,
            port,
            x509_dir,
            failed,
        )
        return None
    server.start()
    return server
