"""``instances/console``'s opener against a real serial console server (the agent's, on
loopback, over TLS with certificates from one CA, a unix socket standing in for QEMU's): the
Status of each refusal, and a socket carrying the guest's bytes when there is none."""

from __future__ import annotations

import pathlib
import socket
from typing import Any

import pytest

from kubenova.console.proxy import settings as proxy_settings
from kubenova.subresources import consoleurl, requestheader, serial, status, streams
from kubenova_agent import serial_console
from tests.support import serial_console as support
from tests.support.serial_console import instances, pki, server, workdir

# The shared fixtures these tests use (tests.support.serial_console).
__all__ = ["instances", "pki", "server", "workdir"]

UUID = "6f1c2a9e-8d3b-4c5e-9f7a-0b1c2d3e4f50"
USER = requestheader.User(name="alice", groups=(), extra={})


class Kube:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)


def place(host: str | None = "localhost", power_state: str = "running") -> consoleurl.ConsolePlace:
    return consoleurl.ConsolePlace(
        uuid=UUID,
        host=host,
        vm_state="active",
        power_state=power_state,
        vnc_port=None,
        spice_port=None,
        spice_tls_port=None,
    )


def opener(
    pki: support.Pki, port: int, found: consoleurl.ConsolePlace | None = None
) -> serial.SerialConsoleOpener:
    kube = Kube({"web-1": {"metadata": {"uid": UUID}}})
    return serial.SerialConsoleOpener(
        kube,
        None,  # type: ignore[arg-type]
        pki.client_context,
        port,
        read_place=lambda _factory, _uuid: found if found is not None else place(),
    )


def refusal(pki: support.Pki, port: int, name: str = "web-1", **kw: Any) -> status.ApiError:
    with pytest.raises(status.ApiError) as refused:
        opener(pki, port, **kw).open("demo", name, USER)
    return refused.value


def test_the_opened_socket_carries_the_guests_bytes(
    server: serial_console.SerialConsoleServer, pki: support.Pki, instances: pathlib.Path
) -> None:
    (instances / UUID).mkdir()
    with support.fake_qemu(str(instances / UUID / "console.sock")):
        opened = opener(pki, server.port).open("demo", "web-1", USER)
        with opened:
            opened.sendall(b"uname\n")
            assert support.read_until(opened, b"UNAME\n") == b"UNAME\n"


def test_an_unknown_instance_is_404(
    server: serial_console.SerialConsoleServer, pki: support.Pki
) -> None:
    refused = refusal(pki, server.port, name="nope")
    assert refused.code == 404
    assert '"nope" not found' in refused.body()["message"]


def test_a_guest_that_is_not_running_or_has_no_host_is_409(
    server: serial_console.SerialConsoleServer, pki: support.Pki
) -> None:
    assert refusal(pki, server.port, found=place(power_state="shutdown")).code == 409
    assert refusal(pki, server.port, found=place(host=None)).code == 409


def test_an_instance_the_host_does_not_have_is_409_naming_the_host(
    server: serial_console.SerialConsoleServer, pki: support.Pki
) -> None:
    refused = refusal(pki, server.port)
    assert refused.code == 409
    assert "is not on host localhost" in refused.body()["message"]


def test_an_old_guest_with_a_file_serial_port_is_409(
    server: serial_console.SerialConsoleServer, pki: support.Pki, instances: pathlib.Path
) -> None:
    (instances / UUID).mkdir()
    (instances / UUID / "console.log").write_bytes(b"")
    refused = refusal(pki, server.port)
    assert refused.code == 409
    assert "no interactive serial console" in refused.body()["message"]


def test_an_unreachable_console_server_is_503_naming_the_host_and_address(
    pki: support.Pki,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    refused = refusal(pki, port)
    assert refused.code == 503
    assert f"host localhost at localhost:{port} is unreachable" in refused.body()["message"]


def test_a_server_with_a_certificate_from_another_ca_is_503(
    pki: support.Pki, instances: pathlib.Path, workdir: pathlib.Path
) -> None:
    other = support.write_pki(workdir / "other")
    with support.running_server(other, instances) as foreign:
        refused = refusal(pki, foreign.port)
    assert refused.code == 503
    assert "could not be reached securely" in refused.body()["message"]


def test_every_host_serves_on_the_agents_default_port() -> None:
    assert serial.DEFAULT_PORT == serial_console.DEFAULT_PORT


def test_console_is_served_beside_the_streams_there_were(pki: support.Pki) -> None:
    headers = requestheader.RequestHeaderConfig(
        client_ca_pem=(pki.proxy_dir / "ca-cert.pem").read_text()
    )

    class Vnc:
        def open(self, namespace: str, name: str, user: requestheader.User) -> socket.socket:
            raise AssertionError("not opened here")

    base = streams.Streams(headers, {"vnc": Vnc()})
    both = serial.with_console(
        base,
        headers,
        Kube({}),
        None,  # type: ignore[arg-type]
        proxy_settings.ProxySettings(x509_dir=pki.proxy_dir),
    )
    prefix = "/apis/subresources.compute.kubenova.io/v1/namespaces/demo/instances/web-1"
    assert both.serves("GET", f"{prefix}/console")
    assert both.serves("GET", f"{prefix}/vnc")
    assert not base.serves("GET", f"{prefix}/console")
    assert not both.serves("GET", f"{prefix}/consolelog")
