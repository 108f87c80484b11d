"""Guests' VNC and SPICE on the real local libvirtds (hack/services.sh libvirt-up and
libvirt2-up), with qemu.conf's console TLS as hack/lib/console_tls.sh writes it.

A guest built through the agent's manager gets its console ports from its host's libvirt,
inside that daemon's display range, different from another guest's; QEMU's VNC offers
VeNCrypt with x509 only, and accepts a client certificate from Kubenova's CA; SPICE has a TLS
port and no plain one; and the ports the manager reports are the ones the live domain has.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import socket
import ssl
import struct
import uuid
from collections.abc import Iterator

import pytest
from cryptography import x509

from kubenova.certs import console, host_dir
from kubenova.rpc import conductor_rpcapi, payloads
from kubenova_agent import manager
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.libvirt import connection, domain_xml, migration, storage
from kubenova_agent.virt.libvirt import driver as libvirt_driver
from tests.integration.virt import conftest
from tests.support import RecordingCaster, second_host
from tests.support.required import missing

pytestmark = pytest.mark.integration

STATE = pathlib.Path(os.environ.get("KUBENOVA_STATE", str(conftest.REPO / ".kubenova")))
CA_DIR = pathlib.Path(os.environ.get("KUBENOVA_CONSOLE_CA_DIR", str(STATE / "console-pki" / "ca")))
#: RFB security type 19, VeNCrypt; its x509 subtypes (X509None, X509VNC, X509Plain).
VENCRYPT = 19
X509_SUBTYPES = frozenset({260, 261, 262})
X509_NONE = 260


def _display_range(qemu_conf: pathlib.Path) -> tuple[int, int]:
    """The daemon's ``remote_display_port_min``/``_max`` (libvirt's defaults when unset)."""
    text = qemu_conf.read_text()
    found = dict(re.findall(r"(?m)^\s*remote_display_port_(min|max)\s*=\s*(\d+)", text))
    return int(found.get("min", 5900)), int(found.get("max", 65535))


def _tls_cert_dir(qemu_conf: pathlib.Path) -> pathlib.Path:
    match = re.search(r'(?m)^\s*vnc_tls_x509_cert_dir\s*=\s*"([^"]+)"', qemu_conf.read_text())
    if match is None or not re.search(r"(?m)^\s*vnc_tls\s*=\s*1", qemu_conf.read_text()):
        missing(f"{qemu_conf} does not turn console TLS on: run hack/services.sh libvirt-up")
    return pathlib.Path(match.group(1))


class Host:
    """One real libvirtd with a LibvirtDriver and a manager reporting to a recorder."""

    def __init__(self, uri: str, qemu_conf: pathlib.Path) -> None:
        self.uri = uri
        self.qemu_conf = qemu_conf
        self.workdir = conftest._traversable_tmpdir()
        self.name = f"console-{uuid.uuid4().hex[:10]}"
        self.driver = libvirt_driver.LibvirtDriver(
            uri=uri,
            instances_path=str(self.workdir / "instances"),
            image_cache_path=str(self.workdir / "_base"),
            hostname=self.name,
            virt_type="qemu",
        )
        self.caster = RecordingCaster()
        self.manager = manager.ComputeManager(
            self.name, self.driver, conductor_rpcapi.ConductorAPI(self.caster)
        )
        self.built: list[str] = []

    def boot(self, image: virt_driver.ImageRef) -> str:
        instance_uuid = str(uuid.uuid4())
        self.built.append(instance_uuid)
        self.manager.build_and_run_instance(
            payloads.InstancePayload(
                uuid=instance_uuid,
                name="console-test",
                namespace="default",
                hostname="console-test",
                vcpus=1,
                memory_mib=128,
                disk_gib=1,
                image=payloads.ImagePayload(
                    name=image.name, url=image.url, sha256=image.sha256, disk_format="qcow2"
                ),
            ),
            "req-console",
        )
        return instance_uuid

    def reported_ports(self, instance_uuid: str) -> payloads.ConsolePorts | None:
        updates = [
            payloads.InstanceUpdate.model_validate(cast.args)
            for cast in self.caster.casts
            if cast.method == "instance_update" and cast.args["instance_uuid"] == instance_uuid
        ]
        assert updates, f"no instance_update about {instance_uuid}"
        return updates[-1].console_ports

    def live_ports(self, instance_uuid: str) -> virt_driver.ConsolePorts | None:
        conn = connection.Connection(self.uri)
        try:
            domain = conn.lookup_by_uuid(instance_uuid)
            assert domain is not None
            return domain_xml.console_ports(domain.xml_desc())
        finally:
            conn.close()

    def close(self) -> None:
        for instance_uuid in self.built:
            with contextlib.suppress(Exception):
                self.driver.destroy(instance_uuid)
        with contextlib.suppress(Exception):
            conn = connection.Connection(self.uri)
            storage.remove_pool(conn, migration.instances_pool(self.name))
            conn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def _host(uri: str, qemu_conf: pathlib.Path) -> Iterator[Host]:
    host = Host(uri, qemu_conf)
    try:
        host.driver.init_host()
        yield host
    finally:
        host.close()


@pytest.fixture(scope="module")
def first_host(image_files) -> Iterator[Host]:
    reason = conftest._libvirt_reachable()
    if reason is not None:
        missing(reason)
    with _host(conftest.LIBVIRT_URI, pathlib.Path("/etc/libvirt/qemu.conf")) as host:
        yield host


@pytest.fixture(scope="module")
def second(image_files) -> Iterator[Host]:
    second_host.require()
    etc = pathlib.Path(os.environ.get("KUBENOVA_LIBVIRT2_DIR", str(STATE / "libvirt2"))) / "etc"
    with _host(second_host.uri(), etc / "qemu.conf") as host:
        yield host


@pytest.fixture(scope="module")
def two_guests(first_host, image_files) -> tuple[str, str]:
    _, served = image_files
    return first_host.boot(served.image), first_host.boot(served.image)


def _ports(host: Host, instance_uuid: str) -> virt_driver.ConsolePorts:
    ports = host.driver.get_instance_state(instance_uuid).console_ports
    assert ports is not None, "a running guest has console ports"
    return ports


def test_ports_come_from_the_daemons_display_range_and_differ_per_guest(first_host, two_guests):
    low, high = _display_range(first_host.qemu_conf)
    seen: list[int] = []
    for instance_uuid in two_guests:
        ports = _ports(first_host, instance_uuid)
        assert ports.spice_port is None, "with TLS on, SPICE has no plain port"
        assert ports.vnc_port is not None
        assert ports.spice_tls_port is not None
        seen += [ports.vnc_port, ports.spice_tls_port]
    assert all(low <= port <= high for port in seen), (seen, (low, high))
    assert len(set(seen)) == len(seen), f"ports handed out twice: {seen}"


def test_the_second_host_hands_out_ports_from_its_own_range(second, image_files):
    _, served = image_files
    instance_uuid = second.boot(served.image)
    low, high = _display_range(second.qemu_conf)
    assert (low, high) != (5900, 65535), "the second daemon has a range of its own"
    ports = _ports(second, instance_uuid)
    assert ports.vnc_port is not None
    assert ports.spice_tls_port is not None
    assert low <= ports.vnc_port <= high
    assert low <= ports.spice_tls_port <= high
    assert second.reported_ports(instance_uuid) == payloads.ConsolePorts(
        vnc_port=ports.vnc_port, spice_tls_port=ports.spice_tls_port
    )


def test_the_report_carries_the_ports_of_the_live_domain(first_host, two_guests):
    for instance_uuid in two_guests:
        live = first_host.live_ports(instance_uuid)
        assert live is not None
        assert first_host.reported_ports(instance_uuid) == payloads.ConsolePorts(
            vnc_port=live.vnc_port, spice_port=live.spice_port, spice_tls_port=live.spice_tls_port
        )


def _recv_exactly(sock: socket.socket | ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def _vencrypt_subtypes(sock: socket.socket) -> tuple[list[int], list[int]]:
    """Speak RFB 3.8 up to VeNCrypt's subtypes: (security types, VeNCrypt subtypes)."""
    version = _recv_exactly(sock, 12)
    assert version.startswith(b"RFB 003.")
    sock.sendall(b"RFB 003.008\n")
    (count,) = _recv_exactly(sock, 1)
    types = list(_recv_exactly(sock, count))
    if VENCRYPT not in types:
        return types, []
    sock.sendall(bytes([VENCRYPT]))
    assert _recv_exactly(sock, 2) == b"\x00\x02"  # VeNCrypt 0.2
    sock.sendall(b"\x00\x02")
    assert _recv_exactly(sock, 1) == b"\x00"  # version accepted
    (subtype_count,) = _recv_exactly(sock, 1)
    raw = _recv_exactly(sock, 4 * subtype_count)
    return types, list(struct.unpack(f">{subtype_count}I", raw))


def _proxy_context(cert_dir: pathlib.Path, tmp_path: pathlib.Path) -> ssl.SSLContext:
    """A client context with the console proxy's certificate from Kubenova's CA, trusting the
    hosts' CA bundle."""
    ca = host_dir.load_or_create_ca(CA_DIR)
    files = console.proxy_files(console.issue_proxy_client_cert(ca), ca.cert_pem())
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    context = ssl.create_default_context(cafile=str(cert_dir / console.CA_FILE))
    context.check_hostname = False  # the hop is verified by its CA; the name is the host's
    context.load_cert_chain(tmp_path / console.CLIENT_CERT_FILE, tmp_path / console.CLIENT_KEY_FILE)
    return context


def test_vnc_offers_only_vencrypt_x509_and_admits_the_proxys_certificate(
    first_host, two_guests, tmp_path
):
    cert_dir = _tls_cert_dir(first_host.qemu_conf)
    port = _ports(first_host, two_guests[0]).vnc_port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        types, subtypes = _vencrypt_subtypes(sock)
        assert types == [VENCRYPT], f"security types offered: {types}"
        assert subtypes, "VeNCrypt offers no subtype"
        assert set(subtypes) <= X509_SUBTYPES, f"VeNCrypt subtypes: {subtypes}"
        assert X509_NONE in subtypes
        sock.sendall(struct.pack(">I", X509_NONE))
        assert _recv_exactly(sock, 1) == b"\x01"  # subtype accepted: TLS follows
        context = _proxy_context(cert_dir, tmp_path)
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            assert tls.getpeercert() is not None
            # RFB's SecurityResult: 0 is OK.
            assert _recv_exactly(tls, 4) == b"\x00\x00\x00\x00"


def test_vnc_refuses_a_tls_client_without_a_certificate(first_host, two_guests):
    cert_dir = _tls_cert_dir(first_host.qemu_conf)
    port = _ports(first_host, two_guests[1]).vnc_port
    assert port is not None
    context = ssl.create_default_context(cafile=str(cert_dir / console.CA_FILE))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        _vencrypt_subtypes(sock)
        sock.sendall(struct.pack(">I", X509_NONE))
        _recv_exactly(sock, 1)
        with (
            pytest.raises((ssl.SSLError, ConnectionError, OSError)),
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
        ):
            _recv_exactly(tls, 4)


def test_spice_talks_only_tls_with_the_hosts_certificate(first_host, two_guests):
    cert_dir = _tls_cert_dir(first_host.qemu_conf)
    port = _ports(first_host, two_guests[0]).spice_tls_port
    assert port is not None
    context = ssl.create_default_context(cafile=str(cert_dir / console.CA_FILE))
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        peer = tls.getpeercert(binary_form=True)
        assert peer is not None
    served = x509.load_der_x509_certificate(peer)
    assert served == x509.load_pem_x509_certificate(
        (cert_dir / console.SERVER_CERT_FILE).read_bytes()
    )
    # A plain SPICE link message ("REDQ" and its header) gets no SPICE answer.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"REDQ" + struct.pack("<III", 2, 2, 0))
        try:
            answer = sock.recv(64)
        except OSError:
            answer = b""
        assert not answer.startswith(b"REDQ"), answer
