"""KUBENOVA_CONSOLE_LISTEN and KUBENOVA_CONSOLE_TLS: where guests' consoles listen and whether
the host's QEMU serves them over TLS, handed to the libvirt driver's domain XML."""

from __future__ import annotations

import pytest

from kubenova_agent import cmd
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt.libvirt import domain_xml
from kubenova_agent.virt.libvirt import driver as libvirt_driver


@pytest.fixture(autouse=True)
def no_console_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBENOVA_CONSOLE_LISTEN", raising=False)
    monkeypatch.delenv("KUBENOVA_CONSOLE_TLS", raising=False)


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
    [("KUBENOVA_CONSOLE_LISTEN", "node-a.example"), ("KUBENOVA_CONSOLE_TLS", "yes")],
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
