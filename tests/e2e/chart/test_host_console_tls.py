"""Console TLS on a hypervisor node installed by the chart: the node's agent gets its
certificate from the operator (the key stays on the node), the chart's libvirtd has QEMU serve
VNC with it on the node's address, and a VNC client reaches the guest through the kube-apiserver
and the aggregated API server, whose client certificate QEMU demands. A renewal (SIGHUP to the
agent) reaches the running guest's QEMU at once, and a session open meanwhile goes on."""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import pathlib
import select
import signal
import socket
import ssl
import struct
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kubenova.console.proxy import rfb
from tests.e2e.chart.conftest import NAMESPACE, instance, running
from tests.e2e.conftest import HOST, KUBECONFIG, KUBECTL, ROOT, apply, get, wait_for
from tests.e2e.test_vnc_stream import recv_exact

pytestmark = [pytest.mark.e2e, pytest.mark.chart]

X509_DIR = pathlib.Path("/var/lib/kubenova/pki/console")


def _secret_file(name: str, key: str) -> bytes:
    secret = get("secret", name, NAMESPACE)
    assert secret is not None, f"no Secret {name}"
    return base64.b64decode(secret["data"][key])


def _node_address() -> str:
    node = get("nodes", HOST)
    assert node is not None
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def _sans(cert: x509.Certificate) -> list[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in names]


def _graphics(instance_uuid: str) -> dict[str, tuple[str, int]]:
    """Each console's listen address and port, from the running domain's live XML."""
    connection = libvirt.open("qemu:///system")
    try:
        live = connection.lookupByUUIDString(instance_uuid).XMLDesc(0)
    finally:
        connection.close()
    found = {}
    for element in ET.fromstring(live).iterfind("devices/graphics"):
        port = element.get("port") if element.get("type") == "vnc" else element.get("tlsPort")
        found[str(element.get("type"))] = (str(element.get("listen")), int(port or 0))
    return found


def _agent_pid() -> int:
    """The chart's agent on this node: the kubenova-agent whose environment names the host
    certificate directory (no agent run by the other tests has one)."""
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kubenova-agent" in cmdline and any(
            e.startswith(b"KUBENOVA_HOST_CERTIFICATE_DIR=") for e in environ
        ):
            return int(entry.name)
    raise AssertionError("no kubenova-agent of the chart runs on this node")


class _Viewer:
    """The viewer's side of rfb.negotiate, answered in advance (RFB 3.8, security None)."""

    def __init__(self) -> None:
        self._answers = [rfb.VERSION_3_8, bytes((rfb.SECURITY_NONE,))]

    def recv_exact(self, count: int) -> bytes:
        return self._answers.pop(0)

    def sendall(self, data: bytes) -> None:
        pass


@pytest.fixture
def proxy_context(tmp_path: pathlib.Path) -> ssl.SSLContext:
    """TLS as the console proxy speaks it to QEMU: its client certificate from the Secret the
    operator keeps, trusting Kubenova's CA bundle."""
    for key in ("ca-cert.pem", "client-cert.pem", "client-key.pem"):
        (tmp_path / key).write_bytes(_secret_file("kubenova-console-x509", key))
    context = ssl.create_default_context(cafile=str(tmp_path / "ca-cert.pem"))
    context.load_cert_chain(tmp_path / "client-cert.pem", tmp_path / "client-key.pem")
    return context


def _served(address: str, port: int, context: ssl.SSLContext) -> x509.Certificate:
    """The certificate QEMU's VNC presents to a client that holds the proxy's certificate, its
    host name checked as the proxy checks it."""
    with socket.create_connection((address, port), timeout=30) as plain:
        secured = rfb.negotiate(_Viewer(), plain, context, HOST)
        try:
            der = secured.getpeercert(binary_form=True)
        finally:
            secured.close()
    assert der is not None
    return x509.load_der_x509_certificate(der)


#: SPICE_LINK_ERR_PERMISSION_DENIED (spice-protocol's spice/enums.h).
SPICE_DENIED = 7
_REDQ = 0x51444552


def _ticket(key: bytes, instance_uuid: str) -> bytes:
    """The guest's SPICE password as docs/certificates.md says it is derived, computed here
    apart from the code under test."""
    digest = hmac.new(key, b"kubenova-spice-ticket\0" + instance_uuid.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(digest)[:32]


def _spice_link(address: str, port: int, context: ssl.SSLContext, password: bytes) -> int:
    """SPICE's link handshake for the main channel over TLS, with ``password``: the server's
    link result (0: let in)."""
    plain = socket.create_connection((address, port), timeout=30)
    with plain, context.wrap_socket(plain, server_hostname=HOST) as sock:
        # SpiceLinkMess: connection id 0, channel main (1) #0, one common capability word
        # (none set: no auth selection, the ticket follows the reply directly), no
        # channel capabilities, the capabilities right after the 18-byte message.
        message = struct.pack("<IBBIII", 0, 1, 0, 1, 0, 18) + struct.pack("<I", 0)
        sock.sendall(struct.pack("<IIII", _REDQ, 2, 2, len(message)) + message)
        magic, major, _minor, size = struct.unpack("<IIII", recv_exact(sock, 16))
        assert (magic, major) == (_REDQ, 2)
        reply = recv_exact(sock, size)
        (error,) = struct.unpack_from("<I", reply)
        assert error == 0, error
        public_key = serialization.load_der_public_key(reply[4:166])
        assert isinstance(public_key, rsa.RSAPublicKey)
        oaep = padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
        )
        sock.sendall(public_key.encrypt(password + b"\0", oaep))
        (result,) = struct.unpack("<I", recv_exact(sock, 4))
        return int(result)


def _security_types(address: str, port: int) -> list[int]:
    """What QEMU's VNC offers a plain RFB 3.8 client."""
    with socket.create_connection((address, port), timeout=30) as sock:
        sock.recv(12)
        sock.sendall(b"RFB 003.008\n")
        (count,) = sock.recv(1)
        return list(sock.recv(count))


def _request_update(sock: socket.socket, size: tuple[int, int]) -> int:
    """One FramebufferUpdateRequest for the whole screen; the answer's message type."""
    sock.sendall(struct.pack("!BBHHHH", 3, 0, 0, 0, *size))
    return recv_exact(sock, 4)[0]


def _drain(sock: socket.socket) -> None:
    """Read what the server has sent so far (the rest of an update)."""
    while select.select([sock], [], [], 1.0)[0]:
        if not sock.recv(1 << 20):
            return


@contextlib.contextmanager
def _vnc_session(port: int) -> Iterator[tuple[socket.socket, tuple[int, int]]]:
    """A plain RFB client on the plugin's local port, through to ServerInit."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        assert recv_exact(sock, 12) == b"RFB 003.008\n"
        sock.sendall(b"RFB 003.008\n")
        (count,) = recv_exact(sock, 1)
        assert list(recv_exact(sock, count)) == [1]
        sock.sendall(b"\x01")
        assert struct.unpack("!I", recv_exact(sock, 4)) == (0,)
        sock.sendall(b"\x01")
        width, height = struct.unpack("!HH", recv_exact(sock, 4))
        recv_exact(sock, 16)
        (name_length,) = struct.unpack("!I", recv_exact(sock, 4))
        recv_exact(sock, name_length)
        yield sock, (width, height)


@contextlib.contextmanager
def _plugin_proxy(name: str, namespace: str) -> Iterator[int]:
    """``kubectl nova vnc NAME --proxy-only``, as a user runs it; yields its local port."""
    process = subprocess.Popen(
        [str(KUBECTL), "nova", "--kubeconfig", str(KUBECONFIG), "-n", namespace, "vnc", name,
         "--proxy-only", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        # An empty line: the plugin ended, and its stderr says why.
        assert line.startswith("listening on 127.0.0.1:"), line or (
            process.stderr.read() if process.stderr else ""
        )
        yield int(line.split(":")[1].split()[0])
    finally:
        process.terminate()
        process.communicate(timeout=10)  # waits, and closes the pipes


def test_the_nodes_vnc_is_tls_with_its_own_certificate_renewed_under_a_running_session(
    user_namespace: str, proxy_context: ssl.SSLContext
) -> None:
    apply(instance("tls-vm", user_namespace))
    instance_uuid = running("tls-vm", user_namespace)["metadata"]["uid"]
    address = _node_address()

    # The agent's certificate: signed by Kubenova's CA for this node's name and address.
    assert X509_DIR.is_symlink()
    issued = x509.load_pem_x509_certificate((X509_DIR / "server-cert.pem").read_bytes())
    ca = x509.load_pem_x509_certificate(_secret_file("kubenova-ca", "tls.crt"))
    issued.verify_directly_issued_by(ca)
    assert _sans(issued) == [HOST, address]
    key_mode = (X509_DIR / "server-key.pem").stat()
    assert (key_mode.st_mode & 0o777, key_mode.st_gid != 0) == (0o640, True)

    # QEMU serves VNC and SPICE on every address (the node's included), TLS only.
    graphics = wait_for(
        "the guest's consoles",
        lambda: (g := _graphics(instance_uuid))["vnc"][1] and g,
        timeout=60,
    )
    assert (graphics["vnc"][0], graphics["spice"][0]) == ("0.0.0.0", "0.0.0.0")
    # SPICE asks every client for the guest's own password, which only the proxy can answer.
    spice_port = graphics["spice"][1]
    key = _secret_file("kubenova-spice-ticket", "key").rstrip()
    assert _spice_link(address, spice_port, proxy_context, b"not-the-ticket") == SPICE_DENIED
    assert _spice_link(address, spice_port, proxy_context, b"") == SPICE_DENIED
    assert _spice_link(address, spice_port, proxy_context, _ticket(key, instance_uuid)) == 0
    vnc_port = graphics["vnc"][1]
    assert _security_types(address, vnc_port) == [rfb.SECURITY_VENCRYPT]
    assert _served(address, vnc_port, proxy_context).serial_number == issued.serial_number

    with _plugin_proxy("tls-vm", user_namespace) as local_port:
        with _vnc_session(local_port) as (session, size):
            assert _request_update(session, size) == 0
            _drain(session)

            # An administrator asks for a new key: the agent writes it and the running guest's
            # QEMU serves it from its next handshake on; the open session goes on.
            os.kill(_agent_pid(), signal.SIGHUP)
            renewed: Any = wait_for(
                "a renewed host certificate",
                lambda: (
                    (c := x509.load_pem_x509_certificate(
                        (X509_DIR / "server-cert.pem").read_bytes()
                    )).serial_number != issued.serial_number
                    and c
                ),
                timeout=60,
            )  # fmt: skip
            wait_for(
                "QEMU to serve the renewed certificate",
                lambda: (
                    _served(address, vnc_port, proxy_context).serial_number == renewed.serial_number
                ),
                timeout=30,
            )
            assert _request_update(session, size) == 0

        # A new session after the renewal.
        with _vnc_session(local_port) as (again, size):
            assert _request_update(again, size) == 0


def _console_log(name: str, namespace: str) -> str:
    done = subprocess.run(
        [str(KUBECTL), "nova", "--kubeconfig", str(KUBECONFIG), "-n", namespace, "console-log",
         name, "--tail", "50"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_console_log_asks_the_guests_host_over_the_message_bus(user_namespace: str) -> None:
    # The aggregated API server calls the host's agent (get_console_output) as the operator's
    # RabbitMQ user, and the agent answers on the caller's reply queue.
    apply(instance("log-vm", user_namespace))
    running("log-vm", user_namespace)
    wait_for(
        "the guest's boot in kubectl nova console-log",
        lambda: "kubenova-guest: ready" in _console_log("log-vm", user_namespace),
        timeout=240,
        interval=5,
    )
