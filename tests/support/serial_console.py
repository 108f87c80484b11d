"""What tests of the host's serial console server start from: the TLS files of a host and of
the console proxy from one CA, a client that asks for an instance's console, and a unix socket
standing in for QEMU's."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import socket
import ssl
import threading
from collections.abc import Iterator

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova_agent import serial_console


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
    ca = authority.issue_ca("kubenova-serial-console-test-ca")
    host_dir, proxy_dir = directory / "host", directory / "proxy"
    host_cert = console_certs.issue_host_cert(ca, host, ["127.0.0.1"])
    client_cert = console_certs.issue_proxy_client_cert(ca)
    for target, files in (
        (host_dir, console_certs.host_files(host_cert, ca.cert_pem())),
        (proxy_dir, console_certs.proxy_files(client_cert, ca.cert_pem())),
    ):
        target.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (target / name).write_bytes(content)
    return Pki(host_dir, proxy_dir)


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
