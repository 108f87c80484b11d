"""What the console proxy's integration tests start from: Kubenova's CA and the console
certificates in their directories, a QEMU whose VNC speaks only VeNCrypt with x509 and wants a
client certificate, the proxy itself, and an RFB client that speaks through it."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence

import pytest
import websocket

from kubenova.certs import authority
from kubenova.certs import console as console_certs
from kubenova.console.proxy import server as proxy_server
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine

# Ports of this suite (16080-16099): the proxy, QEMU's VNC and SPICE's tls-port.
PROXY_PORT = 16080
VNC_PORT = 16090
SPICE_TLS_PORT = 16091
# Every test's console host: the name in the token and in QEMU's certificate.
HOST = "localhost"


@dataclasses.dataclass(frozen=True)
class X509:
    ca: authority.KeyPair
    host_dir: pathlib.Path
    proxy_dir: pathlib.Path
    serving_cert: pathlib.Path
    serving_key: pathlib.Path


def make_x509(root: pathlib.Path) -> X509:
    """The CA, QEMU's directory (host_files) and the proxy's (proxy_files), plus a serving
    certificate for the proxy itself."""
    ca = authority.issue_ca()
    bundle = ca.cert_pem()
    host = console_certs.issue_host_cert(ca, HOST, ["127.0.0.1"])
    proxy = console_certs.issue_proxy_client_cert(ca)
    dirs = {
        "host": console_certs.host_files(host, bundle),
        "proxy": console_certs.proxy_files(proxy, bundle),
    }
    for name, files in dirs.items():
        (root / name).mkdir()
        for filename, content in files.items():
            (root / name / filename).write_bytes(content)
    serving = console_certs.issue_host_cert(ca, HOST, ["127.0.0.1"])
    (root / "serving-cert.pem").write_bytes(serving.cert_pem())
    (root / "serving-key.pem").write_bytes(serving.key_pem())
    return X509(
        ca, root / "host", root / "proxy", root / "serving-cert.pem", root / "serving-key.pem"
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"QEMU exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s}s")


@contextlib.contextmanager
def qemu_with_tls_vnc(x509_dir: pathlib.Path, log: pathlib.Path) -> Iterator[int]:
    """A diskless TCG guest whose firmware draws on a std VGA, VNC on :data:`VNC_PORT` with
    ``tls-creds-x509`` (``verify-peer=yes``) and SPICE on :data:`SPICE_TLS_PORT` with TLS
    only; yields the VNC port."""
    command = [
        qemu_binary(),
        "-nodefaults",
        "-no-user-config",
        "-machine", "pc,accel=tcg",
        "-m", "32",
        "-vga", "std",
        "-display", "none",
        "-object",
        f"tls-creds-x509,id=tls0,dir={x509_dir},endpoint=server,verify-peer=yes",
        "-vnc", f"127.0.0.1:{VNC_PORT - 5900},tls-creds=tls0",
        "-spice",
        f"addr=127.0.0.1,tls-port={SPICE_TLS_PORT},x509-dir={x509_dir},disable-ticketing=on",
    ]  # fmt: skip
    with running_qemu(command, log, (VNC_PORT, SPICE_TLS_PORT)):
        yield VNC_PORT


def qemu_binary() -> str:
    binary = shutil.which("qemu-system-x86_64")
    if binary is None:
        pytest.fail("qemu-system-x86_64 is missing: hack/services.sh installs it", pytrace=False)
    return binary


@contextlib.contextmanager
def running_qemu(
    command: Sequence[str], log: pathlib.Path, ports: Sequence[int]
) -> Iterator[subprocess.Popen[bytes]]:
    """QEMU run with ``command`` (its output in ``log``), once each of ``ports`` listens;
    stopped afterwards."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        for port in ports:
            wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_proxy(
    settings: proxy_settings.ProxySettings, session_factory: db_engine.SessionFactory
) -> Iterator[proxy_server.ConsoleProxyServer]:
    proxy = proxy_server.ConsoleProxyServer(settings, session_factory)
    thread = proxy.start_in_thread()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)


def open_console(
    url: str,
    *,
    origin: str | None = None,
    cookie: str | None = None,
    sslopt: dict[str, object] | None = None,
) -> websocket.WebSocket:
    """A websocket to the proxy, as a browser page opens it (binary subprotocol, Origin)."""
    return websocket.create_connection(
        url,
        timeout=30,
        origin=origin,
        cookie=cookie,
        subprotocols=["binary"],
        sslopt=sslopt,
        suppress_origin=origin is None,
    )


class RFBClient:
    """Enough of a VNC client to prove the console works: the 3.8 handshake with the None
    security type the proxy offers, ClientInit, ServerInit and one framebuffer update."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.buffer = b""

    def recv(self, count: int) -> bytes:
        while len(self.buffer) < count:
            data = self.ws.recv()
            assert isinstance(data, bytes), f"expected binary, got {data!r}"
            if not data:
                raise EOFError("the proxy closed the console")
            self.buffer += data
        head, self.buffer = self.buffer[:count], self.buffer[count:]
        return head

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def handshake(self) -> tuple[int, int, str]:
        """Up to ServerInit; returns the screen's width, height and name."""
        assert self.recv(12) == b"RFB 003.008\n"
        self.send(b"RFB 003.008\n")
        (count,) = self.recv(1)
        types = list(self.recv(count))
        assert types == [1], f"the proxy offers {types}, not None alone"
        self.send(b"\x01")
        assert struct.unpack("!I", self.recv(4)) == (0,), "SecurityResult failed"
        self.send(b"\x01")  # ClientInit: shared
        width, height = struct.unpack("!HH", self.recv(4))
        self.recv(16)  # pixel format
        (name_length,) = struct.unpack("!I", self.recv(4))
        return width, height, self.recv(name_length).decode()

    def framebuffer_update(self, width: int, height: int) -> tuple[int, int]:
        """Ask for the whole screen; returns the message type and rectangle count of the
        first answer (0 is FramebufferUpdate)."""
        self.send(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        message_type, _, rectangles = struct.unpack("!BBH", self.recv(4))
        return message_type, rectangles
