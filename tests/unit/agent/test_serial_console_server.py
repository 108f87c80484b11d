"""The host's serial console server over a real TLS connection on loopback, with a unix socket
standing in for QEMU's: the request line, each refusal in one line, the relay both ways, one
client per instance, and no way in without a client certificate from the console CA."""

from __future__ import annotations

import pathlib
import ssl

import pytest

from kubenova.certs import console as console_certs
from kubenova_agent import serial_console
from kubenova_agent.settings import AgentSettings
from tests.support import serial_console as support
from tests.support.serial_console import instances, pki, server, workdir

# The shared fixtures these tests use (tests.support.serial_console).
__all__ = ["instances", "pki", "server", "workdir"]

UUID = "6f1c2a9e-8d3b-4c5e-9f7a-0b1c2d3e4f50"


def guest_dir(instances: pathlib.Path, instance_uuid: str = UUID) -> pathlib.Path:
    directory = instances / instance_uuid
    directory.mkdir()
    return directory


def nothing_answers(port: int, context: ssl.SSLContext) -> bool:
    """Whether the server ends the connection without answering. Under TLS 1.3 a client
    learns that its certificate was refused only when it next reads."""
    try:
        client, answer = support.ask(port, context, f"{UUID}\n".encode())
    except (ssl.SSLError, ConnectionError):
        return True
    client.close()
    return answer == b""


def test_a_request_line_is_an_instance_uuid() -> None:
    assert serial_console.parse_request(f"{UUID}\n".encode()) == UUID
    assert serial_console.parse_request(f"{UUID}\r\n".encode()) == UUID
    for bad in (UUID.encode(), b"../../etc/passwd\n", b"\xff\n", b"\n"):
        with pytest.raises(serial_console.Refused) as refused:
            serial_console.parse_request(bad)
        assert refused.value.reason is serial_console.Refusal.BAD_REQUEST


def test_a_refusal_is_one_line_whatever_its_message_holds() -> None:
    refused = serial_console.Refused(serial_console.Refusal.BUSY, "two\nlines")
    assert refused.line() == b"ERROR busy two lines\n"


def test_bytes_go_both_ways_between_the_client_and_the_guests_socket(
    server: serial_console.SerialConsoleServer, pki: support.Pki, instances: pathlib.Path
) -> None:
    sock_path = str(guest_dir(instances) / "console.sock")
    with support.fake_qemu(sock_path):
        client, answer = support.ask(server.port, pki.client_context(), f"{UUID}\n".encode())
        with client:
            assert answer == b"OK\n"
            client.sendall(b"echo hello\n")
            assert support.read_until(client, b"ECHO HELLO\n") == b"ECHO HELLO\n"


def test_an_instance_not_on_this_host_is_refused_in_one_line(
    server: serial_console.SerialConsoleServer, pki: support.Pki
) -> None:
    client, answer = support.ask(server.port, pki.client_context(), f"{UUID}\n".encode())
    with client:
        assert answer == f"ERROR unknown_instance instance {UUID} is not on this host\n".encode()
        assert client.recv(1) == b""


def test_a_guest_with_a_file_serial_port_has_no_interactive_console(
    server: serial_console.SerialConsoleServer, pki: support.Pki, instances: pathlib.Path
) -> None:
    (guest_dir(instances) / "console.log").write_bytes(b"booted\n")
    client, answer = support.ask(server.port, pki.client_context(), f"{UUID}\n".encode())
    with client:
        assert answer.startswith(b"ERROR no_console ")
        assert b"serial port is a file" in answer


def test_a_bad_request_is_refused(
    server: serial_console.SerialConsoleServer, pki: support.Pki
) -> None:
    client, answer = support.ask(server.port, pki.client_context(), b"hello\n")
    with client:
        assert answer.startswith(b"ERROR bad_request ")


def test_a_second_client_of_the_same_console_is_told_it_is_busy(
    server: serial_console.SerialConsoleServer, pki: support.Pki, instances: pathlib.Path
) -> None:
    sock_path = str(guest_dir(instances) / "console.sock")
    with support.fake_qemu(sock_path):
        first, answer = support.ask(server.port, pki.client_context(), f"{UUID}\n".encode())
        with first:
            assert answer == b"OK\n"
            second, refused = support.ask(server.port, pki.client_context(), f"{UUID}\n".encode())
            second.close()
            assert refused.startswith(b"ERROR busy ")
        # Once the first has left, the console is free again.
        for _ in range(50):
            third, answer = support.ask(server.port, pki.client_context(), f"{UUID}\n".encode())
            third.close()
            if answer == b"OK\n":
                break
        assert answer == b"OK\n"


def test_a_client_without_a_certificate_gets_nothing(
    server: serial_console.SerialConsoleServer, pki: support.Pki
) -> None:
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(pki.proxy_dir / console_certs.CA_FILE)
    )
    assert nothing_answers(server.port, context)


def test_a_hosts_certificate_cannot_pose_as_a_client(
    server: serial_console.SerialConsoleServer, pki: support.Pki, workdir: pathlib.Path
) -> None:
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(pki.host_dir / console_certs.CA_FILE)
    )
    context.load_cert_chain(
        pki.host_dir / console_certs.SERVER_CERT_FILE, pki.host_dir / console_certs.SERVER_KEY_FILE
    )
    assert nothing_answers(server.port, context)


def test_a_client_certificate_from_another_ca_is_refused(
    server: serial_console.SerialConsoleServer, pki: support.Pki, workdir: pathlib.Path
) -> None:
    other = support.write_pki(workdir / "other")
    context = other.client_context()
    context.load_verify_locations(cafile=str(pki.proxy_dir / console_certs.CA_FILE))
    assert nothing_answers(server.port, context)


def test_no_server_without_its_certificate(workdir: pathlib.Path) -> None:
    assert serial_console.start_from_settings("127.0.0.1", 0, str(workdir), str(workdir)) is None
    assert (
        serial_console.start_from_settings("127.0.0.1", 1, str(workdir / "none"), str(workdir))
        is None
    )


def test_settings_default_to_the_consoles_address_and_port_6083(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "KUBENOVA_SERIAL_CONSOLE_LISTEN",
        "KUBENOVA_SERIAL_CONSOLE_PORT",
        "KUBENOVA_SERIAL_CONSOLE_X509_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBENOVA_CONSOLE_LISTEN", "10.0.0.5")
    settings = AgentSettings.from_env(host="node-a")
    assert (
        settings.serial_console_listen,
        settings.serial_console_port,
        settings.serial_console_x509_dir,
    ) == ("10.0.0.5", serial_console.DEFAULT_PORT, serial_console.DEFAULT_X509_DIR)
    monkeypatch.setenv("KUBENOVA_SERIAL_CONSOLE_LISTEN", "127.0.0.2")
    monkeypatch.setenv("KUBENOVA_SERIAL_CONSOLE_PORT", "0")
    monkeypatch.setenv("KUBENOVA_SERIAL_CONSOLE_X509_DIR", "/srv/x509")
    settings = AgentSettings.from_env(host="node-a")
    assert (
        settings.serial_console_listen,
        settings.serial_console_port,
        settings.serial_console_x509_dir,
    ) == ("127.0.0.2", 0, "/srv/x509")
    monkeypatch.setenv("KUBENOVA_SERIAL_CONSOLE_PORT", "70000")
    with pytest.raises(ValueError, match="KUBENOVA_SERIAL_CONSOLE_PORT"):
        AgentSettings.from_env(host="node-a")
