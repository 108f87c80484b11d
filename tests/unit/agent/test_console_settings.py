"""KUBENOVA_CONSOLE_LISTEN and KUBENOVA_CONSOLE_TLS: where guests' consoles listen and whether
the host's QEMU serves them over TLS, handed to the libvirt driver's domain XML."""

from __future__ import annotations

import pathlib

import pytest

from kubenova_agent import cmd
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt.libvirt import domain_xml
from kubenova_agent.virt.libvirt import driver as libvirt_driver


@pytest.fixture(autouse=True)
def no_console_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBENOVA_CONSOLE_LISTEN", raising=False)
    monkeypatch.delenv("KUBENOVA_CONSOLE_TLS", raising=False)
    monkeypatch.delenv("KUBENOVA_CONSOLE_ADDRESS", raising=False)
    monkeypatch.delenv("KUBENOVA_SPICE_LISTEN", raising=False)
    monkeypatch.delenv("KUBENOVA_SPICE_TICKET_KEY_FILE", raising=False)


def test_loopback_and_tls_by_default() -> None:
    settings = AgentSettings.from_env(host="node-a")
    assert (settings.console_listen, settings.console_tls) == ("127.0.0.1", True)


def test_the_nodes_address_and_no_tls_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENOVA_CONSOLE_LISTEN", "10.1.2.3")
    monkeypatch.setenv("KUBENOVA_CONSOLE_TLS", "false")
    settings = AgentSettings.from_env(host="node-a")
    assert (settings.console_listen, settings.console_tls) == ("10.1.2.3", False)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KUBENOVA_CONSOLE_LISTEN", "node-a.example"),
        ("KUBENOVA_CONSOLE_TLS", "yes"),
        ("KUBENOVA_SPICE_LISTEN", "localhost"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        AgentSettings.from_env(host="node-a")


def test_the_libvirt_driver_gets_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENOVA_CONSOLE_LISTEN", "10.1.2.3")
    monkeypatch.setenv("KUBENOVA_CONSOLE_TLS", "false")
    settings = AgentSettings.from_env(host="node-a", amqp_url="amqp://u:p@127.0.0.1/kubenova")
    driver = cmd.make_driver(cmd.build_parser().parse_args(["--host", "node-a"]), settings)
    assert isinstance(driver, libvirt_driver.LibvirtDriver)
    assert driver.graphics == domain_xml.Graphics(listen="10.1.2.3", tls=False)


def driver_of(settings: AgentSettings) -> libvirt_driver.LibvirtDriver:
    made = cmd.make_driver(cmd.build_parser().parse_args(["--host", "node-a"]), settings)
    assert isinstance(made, libvirt_driver.LibvirtDriver)
    return made


@pytest.mark.parametrize(
    ("environment", "address"),
    [
        ({}, "127.0.0.1"),
        ({"KUBENOVA_CONSOLE_LISTEN": "10.1.2.3"}, "10.1.2.3"),
        ({"KUBENOVA_CONSOLE_LISTEN": "0.0.0.0"}, None),
        (
            {"KUBENOVA_CONSOLE_LISTEN": "0.0.0.0", "KUBENOVA_CONSOLE_ADDRESS": "node-a.lan"},
            "node-a.lan",
        ),
    ],
    ids=["loopback", "node-address", "every-address", "explicit"],
)
def test_the_console_address_reported_is_where_the_consoles_listen_unless_told(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], address: str | None
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = AgentSettings.from_env(host="node-a", amqp_url="amqp://u:p@127.0.0.1/kubenova")
    assert driver_of(settings).console_address == address


def test_spice_can_stay_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENOVA_CONSOLE_LISTEN", "10.1.2.3")
    monkeypatch.setenv("KUBENOVA_SPICE_LISTEN", "127.0.0.1")
    settings = AgentSettings.from_env(host="node-a", amqp_url="amqp://u:p@127.0.0.1/kubenova")
    assert driver_of(settings).graphics == domain_xml.Graphics(
        listen="10.1.2.3", spice_listen="127.0.0.1"
    )


def test_the_spice_ticket_key_is_read_from_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    key_file = tmp_path / "spice-ticket.key"
    key_file.write_bytes(b"0123456789abcdef0123456789abcdef-and-more\n")
    monkeypatch.setenv("KUBENOVA_CONSOLE_LISTEN", "10.1.2.3")
    monkeypatch.setenv("KUBENOVA_SPICE_TICKET_KEY_FILE", str(key_file))
    settings = AgentSettings.from_env(host="node-a", amqp_url="amqp://u:p@127.0.0.1/kubenova")
    assert driver_of(settings).graphics == domain_xml.Graphics(
        listen="10.1.2.3", spice_ticket_key=b"0123456789abcdef0123456789abcdef-and-more"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read"), (b"short\n", "has 5 bytes; at least 32")],
    ids=["missing", "too-short"],
)
def test_a_spice_ticket_key_that_cannot_serve_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, content: bytes | None, reason: str
) -> None:
    key_file = tmp_path / "spice-ticket.key"
    if content is not None:
        key_file.write_bytes(content)
    monkeypatch.setenv("KUBENOVA_SPICE_TICKET_KEY_FILE", str(key_file))
    with pytest.raises(ValueError, match=f"KUBENOVA_SPICE_TICKET_KEY_FILE: .*{reason}"):
        AgentSettings.from_env(host="node-a")
