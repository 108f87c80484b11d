"""What tests of the host's serial console server start from: the TLS files of a host and of
the console proxy from one CA, a client that asks for an instance's console, and a unix socket
standing in for QEMU's."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator

import pytest

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova_agent import serial_console
from tests.support import console_pki


@dataclasses.dataclass(frozen=True)
class Pki:
    """A host's x509 directory and the proxy's, from one CA."""

    host_dir: pathlib.Path
    proxy_dir: pathlib.Path

    def client_context(self, server_name: str = "localhost") -> ssl.SSLContext:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.proxy_dir / console_certs.CA_FILE)
        )
        context.load_cert_chain(
            self.proxy_dir / console_certs.CLIENT_CERT_FILE,
            self.proxy_dir / console_certs.CLIENT_KEY_FILE,
        )
        return context


def write_pki(directory: pathlib.Path, host: str = "localhost") -> Pki:
    """A new CA's host directory (``directory/host``) and proxy directory
    (``directory/proxy``); a second call makes a CA of its own, that trusts neither."""
    ca = authority.issue_ca("kubenova-serial-console-test-ca")
    return Pki(
        console_pki.write_host_x509_dir(directory / "host", ca, host),
        console_pki.write_proxy_x509_dir(directory / "proxy", ca),
    )


# The fixtures the serial console's tests share (the agent's server and the subresources'
# opener): a test module imports the ones it uses and lists them in ``__all__``.


@pytest.fixture
def workdir() -> Iterator[pathlib.Path]:
    """A directory of the test's own, under /tmp: a unix socket's path is at most 107 bytes,
    and pytest's tmp_path is long."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="kn-sc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pki(workdir: pathlib.Path) -> Pki:
    """The host's and the proxy's TLS files, from one CA."""
    return write_pki(workdir / "pki")


@pytest.fixture
def instances(workdir: pathlib.Path) -> pathlib.Path:
    """The host's instances directory, where each guest's serial socket is."""
    path = workdir / "instances"
    path.mkdir()
    return path


@pytest.fixture
def server(pki: Pki, instances: pathlib.Path) -> Iterator[serial_console.SerialConsoleServer]:
    """The host's serial console server on a loopback port, with the host's certificate."""
    with running_server(pki, instances) as running:
        yield running


def ask(
    port: int, context: ssl.SSLContext, request: bytes, server_name: str = "localhost"
) -> tuple[ssl.SSLSocket, bytes]:
    """Connect to the server on loopback, send ``request``; the socket and the answer line."""
    plain = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        secured = context.wrap_socket(plain, server_hostname=server_name)
    except BaseException:
        plain.close()
        raise
    try:
        secured.sendall(request)
        answer = bytearray()
        while not answer.endswith(b"\n"):
            byte = secured.recv(1)
            if not byte:
                break
            answer += byte
    except BaseException:
        secured.close()
        raise
    return secured, bytes(answer)


def read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    """What ``sock`` sends until ``marker`` arrived (or it closed)."""
    seen = bytearray()
    while marker not in seen and len(seen) < limit:
        data = sock.recv(4096)
        if not data:
            break
        seen += data
    return bytes(seen)


@contextlib.contextmanager
def fake_qemu(path: str) -> Iterator[None]:
    """A unix socket at ``path`` answering each line with the line in upper case, one client
    at a time, as QEMU's serial socket serves."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        break
                    conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)


@contextlib.contextmanager
def running_server(
    pki: Pki, instances_path: pathlib.Path
) -> Iterator[serial_console.SerialConsoleServer]:
    server = serial_console.SerialConsoleServer(
        ("127.0.0.1", 0), serial_console.server_context(pki.host_dir), instances_path
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
