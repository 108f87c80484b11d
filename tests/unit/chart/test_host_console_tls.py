"""Console TLS on the hypervisor nodes: the agent asks the operator for its node's certificate
and keeps it where the chart's libvirtd points QEMU, and the consoles listen on the node's
address for the console proxy."""

from __future__ import annotations

import pathlib

import pytest

from kubenova_agent.settings import AgentSettings
from tests.unit.chart.chartlib import container, env_of, volumes_of

X509_DIR = "/var/lib/kubenova/pki/console"
SPICE_KEY = "/etc/kubenova/spice-ticket/key"


def _agent_env(rendered) -> dict:
    return env_of(container(rendered.get("DaemonSet", "kubenova-agent"), "agent"))


def _libvirt(rendered) -> dict:
    return container(rendered.get("DaemonSet", "kubenova-libvirt"), "libvirt")


def _mounted(workload: dict, name: str, path: str) -> bool:
    """Whether ``path`` lies under a hostPath volume mounted at the same path."""
    spec = workload["spec"]["template"]["spec"]
    host_paths = {
        volume["name"]: volume["hostPath"]["path"]
        for volume in spec["volumes"]
        if "hostPath" in volume
    }
    for mount in container(workload, name)["volumeMounts"]:
        source = host_paths.get(mount["name"])
        if source == mount["mountPath"] and pathlib.PurePath(path).is_relative_to(source):
            return True
    return False


def test_should_serve_consoles_over_tls_on_the_nodes_address_by_default(render) -> None:
    rendered = render()
    env = _agent_env(rendered)
    assert env["KUBENOVA_CONSOLE_TLS"]["value"] == "true"
    # QEMU on every address (a migrating guest's XML must fit every node), reached at the
    # node's; the serial console server, the agent's own, on the node's address alone.
    assert env["KUBENOVA_CONSOLE_LISTEN"]["value"] == "0.0.0.0"
    for name in ("KUBENOVA_CONSOLE_ADDRESS", "KUBENOVA_SERIAL_CONSOLE_LISTEN"):
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    # SPICE listens there too, behind each guest's password.
    assert "KUBENOVA_SPICE_LISTEN" not in env
    assert env["KUBENOVA_SPICE_TICKET_KEY_FILE"]["value"] == SPICE_KEY
    assert env["KUBENOVA_HOST_CERTIFICATE_DIR"]["value"] == X509_DIR
    assert env["KUBENOVA_SERIAL_CONSOLE_X509_DIR"]["value"] == X509_DIR
    libvirt_env = env_of(_libvirt(rendered))
    assert libvirt_env["KUBENOVA_CONSOLE_X509_DIR"]["value"] == X509_DIR
    # Both pods see the directory at the same path on the node.
    assert _mounted(rendered.get("DaemonSet", "kubenova-agent"), "agent", X509_DIR)
    assert _mounted(rendered.get("DaemonSet", "kubenova-libvirt"), "libvirt", X509_DIR)


def test_should_have_the_operator_sign_host_certificates_for_the_certificates_lifetime(
    render,
) -> None:
    rendered = render({"certificates": {"lifetimeHours": 48}})
    env = env_of(container(rendered.get("Deployment", "kubenova-operator"), "operator"))
    assert env["KUBENOVA_HOST_CERTIFICATE_LIFETIME_HOURS"]["value"] == "48"


def test_should_follow_the_data_path(render) -> None:
    rendered = render({"agent": {"dataPath": "/srv/kubenova/"}})
    assert _agent_env(rendered)["KUBENOVA_HOST_CERTIFICATE_DIR"]["value"] == (
        "/srv/kubenova/pki/console"
    )
    assert env_of(_libvirt(rendered))["KUBENOVA_CONSOLE_X509_DIR"]["value"] == (
        "/srv/kubenova/pki/console"
    )


def test_should_keep_consoles_on_loopback_without_tls_when_off(render) -> None:
    rendered = render({"agent": {"consoleTls": False}})
    env = _agent_env(rendered)
    assert env["KUBENOVA_CONSOLE_TLS"]["value"] == "false"
    for name in (
        "KUBENOVA_CONSOLE_LISTEN",
        "KUBENOVA_CONSOLE_ADDRESS",
        "KUBENOVA_SERIAL_CONSOLE_LISTEN",
        "KUBENOVA_HOST_CERTIFICATE_DIR",
        "KUBENOVA_SPICE_TICKET_KEY_FILE",
    ):
        assert name not in env
    assert "KUBENOVA_CONSOLE_X509_DIR" not in env_of(_libvirt(rendered))
    assert rendered.find("Secret", "kubenova-spice-ticket") is None


def test_the_agent_reads_the_rendered_settings(
    render, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    env = _agent_env(render())
    for name, var in env.items():
        if "value" in var and name.startswith("KUBENOVA_"):
            monkeypatch.setenv(name, var["value"])
    # What the kubelet puts in for status.hostIP.
    monkeypatch.setenv("KUBENOVA_CONSOLE_ADDRESS", "192.0.2.2")
    monkeypatch.setenv("KUBENOVA_SERIAL_CONSOLE_LISTEN", "192.0.2.2")
    # What the kubelet mounts from the Secret.
    key_file = tmp_path / "key"
    key_file.write_text(render().get("Secret", "kubenova-spice-ticket")["stringData"]["key"])
    monkeypatch.setenv("KUBENOVA_SPICE_TICKET_KEY_FILE", str(key_file))
    settings = AgentSettings.from_env(host="node-a", amqp_url="amqp://u:p@rabbitmq/kubenova")
    assert (settings.console_listen, settings.spice_listen, settings.console_tls) == (
        "0.0.0.0",
        None,
        True,
    )
    assert settings.console_address == "192.0.2.2"
    assert settings.spice_ticket_key is not None
    assert settings.serial_console_x509_dir == X509_DIR
    assert settings.serial_console_listen == "192.0.2.2"


def test_the_aggregated_server_holds_the_client_certificate_and_reaches_the_bus(render) -> None:
    for values in ({}, {"console": {"enabled": False}}):
        rendered = render(values)
        deployment = rendered.get("Deployment", "kubenova-subresources")
        server = container(deployment, "subresources")
        env = env_of(server)
        assert env["KUBENOVA_CONSOLE_X509_DIR"]["value"] == "/etc/kubenova/console-x509"
        assert env["KUBENOVA_AMQP_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
        mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
        secret = volumes_of(deployment)["console-client-certificate"]["secret"]["secretName"]
        assert mounts["console-client-certificate"] == "/etc/kubenova/console-x509"
        # Issued by the operator even without the console proxy.
        operator_env = env_of(
            container(rendered.get("Deployment", "kubenova-operator"), "operator")
        )
        assert f'"secret":"{secret}"' in operator_env["KUBENOVA_CERTIFICATES"]["value"]


def test_the_agents_and_the_console_proxy_mount_the_one_spice_ticket_key(render) -> None:
    rendered = render()
    secret = rendered.get("Secret", "kubenova-spice-ticket")
    assert len(secret["stringData"]["key"]) == 48
    for kind, name, container_name, variable in (
        ("DaemonSet", "kubenova-agent", "agent", "KUBENOVA_SPICE_TICKET_KEY_FILE"),
        ("Deployment", "kubenova-console", "console", "KUBENOVA_CONSOLE_SPICE_TICKET_KEY_FILE"),
    ):
        workload = rendered.get(kind, name)
        assert volumes_of(workload)["spice-ticket"]["secret"]["secretName"] == (
            "kubenova-spice-ticket"
        )
        mounts = {
            m["name"]: m["mountPath"] for m in container(workload, container_name)["volumeMounts"]
        }
        assert mounts["spice-ticket"] == "/etc/kubenova/spice-ticket"
        assert env_of(container(workload, container_name))[variable]["value"] == SPICE_KEY
