"""Console TLS on the hypervisor nodes: the agent asks the operator for its node's certificate
and keeps it where the chart's libvirtd points QEMU, and the consoles listen on the node's
address for the console proxy."""

from __future__ import annotations

import pathlib

import pytest

from kubenova_agent.settings import AgentSettings
from tests.unit.chart.chartlib import container, env_of, volumes_of

X509_DIR = "/var/lib/kubenova/pki/console"


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
    assert env["KUBENOVA_CONSOLE_LISTEN"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["KUBENOVA_SPICE_LISTEN"]["value"] == "127.0.0.1"
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
    for name in ("KUBENOVA_CONSOLE_LISTEN", "KUBENOVA_HOST_CERTIFICATE_DIR"):
        assert name not in env
    assert "KUBENOVA_CONSOLE_X509_DIR" not in env_of(_libvirt(rendered))


def test_the_agent_reads_the_rendered_settings(render, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _agent_env(render())
    for name, var in env.items():
        if "value" in var and name.startswith("KUBENOVA_"):
            monkeypatch.setenv(name, var["value"])
    # What the kubelet puts in for status.hostIP.
    monkeypatch.setenv("KUBENOVA_CONSOLE_LISTEN", "192.0.2.2")
    settings = AgentSettings.from_env(host="node-a", amqp_url="amqp://u:p@rabbitmq/kubenova")
    assert (settings.console_listen, settings.spice_listen, settings.console_tls) == (
        "192.0.2.2",
        "127.0.0.1",
        True,
    )
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
