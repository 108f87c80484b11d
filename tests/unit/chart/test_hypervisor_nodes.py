"""The node-agent and libvirt DaemonSets on the hypervisor nodes."""

from __future__ import annotations

import json

import pytest

from kubenova_agent.settings import VIRT_TYPES
from tests.unit.chart.chartlib import CHART, NAMESPACE, container, env_of, volumes_of

AGENT = "kubenova-agent"
LIBVIRT = "kubenova-libvirt"


def _mounts(spec):
    return {mount["name"]: mount for mount in spec.get("volumeMounts", [])}


def test_should_run_the_agent_on_nodes_labelled_as_hypervisors(render) -> None:
    pod = render().get("DaemonSet", AGENT)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubenova.io/hypervisor": "true"}
    # Helm merges a map with its default: null drops the default label.
    selector = {"kubenova.io/hypervisor": None, "node-role/compute": "yes"}
    custom = render({"agent": {"nodeSelector": selector}})
    for name in (AGENT, LIBVIRT):
        selector = custom.get("DaemonSet", name)["spec"]["template"]["spec"]["nodeSelector"]
        assert selector == {"node-role/compute": "yes"}


def test_should_run_the_agent_in_the_host_network_resolving_services(render) -> None:
    pod = render().get("DaemonSet", AGENT)["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_should_name_the_host_after_the_node_and_keep_files_under_var_lib_kubenova(render):
    agent = render().get("DaemonSet", AGENT)
    env = env_of(container(agent, "agent"))
    assert env["KUBENOVA_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["KUBENOVA_INSTANCES_PATH"]["value"] == "/var/lib/kubenova/instances"
    assert env["KUBENOVA_IMAGE_CACHE_PATH"]["value"] == "/var/lib/kubenova/_base"
    assert volumes_of(agent)["data"]["hostPath"]["path"] == "/var/lib/kubenova"
    assert _mounts(container(agent, "agent"))["data"]["mountPath"] == "/var/lib/kubenova"


def test_should_give_the_agent_a_projected_token_for_the_operator_and_no_shared_credential(
    render,
) -> None:
    agent = render().get("DaemonSet", AGENT)
    spec = container(agent, "agent")
    volumes = volumes_of(agent)
    token, ca = volumes["operator-token"]["projected"]["sources"]
    assert token == {
        "serviceAccountToken": {
            "audience": "kubenova-operator",
            "path": "token",
            "expirationSeconds": 3600,
        }
    }
    # The operator's CA, public: what the agent checks the exchange's certificate against.
    assert ca == {
        "configMap": {"name": "kubenova-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    }
    assert _mounts(spec)["operator-token"]["mountPath"] == "/var/run/secrets/kubenova"
    assert env_of(spec)["KUBENOVA_AGENT_CREDENTIALS_URL"]["value"] == (
        f"https://kubenova-operator.{NAMESPACE}.svc:8443/agent-credentials"
    )
    # No RabbitMQ or database credential reaches the agent by any road.
    assert not any(
        "valueFrom" in var and "secretKeyRef" in var["valueFrom"] for var in spec.get("env", [])
    )
    # The Secrets it mounts are the image server's upload token (snapshots) and the key of
    # guests' SPICE passwords, which open no database or queue.
    secrets = {vol["secret"]["secretName"] for vol in volumes.values() if "secret" in vol}
    assert secrets == {"kubenova-image-server", "kubenova-spice-ticket"}
    assert "envFrom" not in spec


def test_should_run_libvirt_in_its_own_privileged_daemonset_in_the_hosts_pid_namespace(render):
    libvirt = render().get("DaemonSet", LIBVIRT)
    pod = libvirt["spec"]["template"]["spec"]
    spec = container(libvirt, "libvirt")
    assert (pod["hostPID"], pod["hostNetwork"]) == (True, True)
    assert spec["securityContext"]["privileged"] is True
    assert libvirt["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }
    assert spec["image"] == "127.0.0.1:5000/kubenova/libvirt:0.1.0"


def test_should_keep_libvirts_state_on_the_host_so_guests_outlive_its_pod(render) -> None:
    libvirt = render().get("DaemonSet", LIBVIRT)
    volumes = volumes_of(libvirt)
    mounts = _mounts(container(libvirt, "libvirt"))
    for name, path in (
        ("libvirt-run", "/run/libvirt"),
        ("libvirt-lib", "/var/lib/libvirt"),
        ("libvirt-qemu-config", "/etc/libvirt/qemu"),
        ("data", "/var/lib/kubenova"),
        ("cgroup", "/sys/fs/cgroup"),
    ):
        assert volumes[name]["hostPath"]["path"] == path
        assert mounts[name]["mountPath"] == path


def test_should_share_libvirts_socket_with_the_agent_through_the_host(render) -> None:
    rendered = render()
    agent, libvirt = rendered.get("DaemonSet", AGENT), rendered.get("DaemonSet", LIBVIRT)
    assert volumes_of(agent)["libvirt-run"]["hostPath"] == {
        "path": "/run/libvirt",
        "type": "DirectoryOrCreate",
    }
    assert volumes_of(libvirt)["libvirt-run"]["hostPath"]["path"] == "/run/libvirt"
    assert _mounts(container(agent, "agent"))["libvirt-run"]["mountPath"] == "/run/libvirt"


def test_should_use_the_hosts_libvirtd_in_host_mode(render) -> None:
    rendered = render({"libvirt": {"mode": "host"}})
    assert rendered.find("DaemonSet", LIBVIRT) is None
    assert rendered.find("ServiceAccount", LIBVIRT) is None
    agent = rendered.get("DaemonSet", AGENT)
    assert volumes_of(agent)["libvirt-run"]["hostPath"] == {
        "path": "/run/libvirt",
        "type": "Directory",
    }


def test_should_roll_libvirt_on_its_own_only_when_asked(render) -> None:
    libvirt = render({"libvirt": {"updateStrategy": "RollingUpdate"}}).get("DaemonSet", LIBVIRT)
    assert libvirt["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }


def test_should_run_the_agent_as_root_with_few_capabilities_on_a_read_only_root(render):
    security = container(render().get("DaemonSet", AGENT), "agent")["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in security


def test_should_pass_the_virt_type_to_the_agent(render) -> None:
    env = env_of(container(render().get("DaemonSet", AGENT), "agent"))
    assert env["KUBENOVA_VIRT_TYPE"] == {"name": "KUBENOVA_VIRT_TYPE", "value": "auto"}
    forced = render({"agent": {"virtType": "qemu"}}).get("DaemonSet", AGENT)
    assert env_of(container(forced, "agent"))["KUBENOVA_VIRT_TYPE"]["value"] == "qemu"


def test_should_have_the_agent_start_guests_first_unless_told_otherwise(render) -> None:
    name = "KUBENOVA_STARTING_GUESTS_FIRST"
    env = env_of(container(render().get("DaemonSet", AGENT), "agent"))
    assert env[name] == {"name": name, "value": "true"}
    off = render({"agent": {"startingGuestsFirst": False}}).get("DaemonSet", AGENT)
    assert env_of(container(off, "agent"))[name]["value"] == "false"


@pytest.mark.parametrize("virt_type", ["xen", "KVM", ""])
def test_should_refuse_a_virt_type_the_agent_does_not_know(helm, virt_type) -> None:
    result = helm.template({"agent": {"virtType": virt_type}})
    assert result.returncode != 0
    assert "schema" in result.stderr
    assert "virtType" in result.stderr, result.stderr


def test_should_offer_the_virt_types_the_agent_accepts() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    virt_type = schema["properties"]["agent"]["properties"]["virtType"]
    assert tuple(virt_type["enum"]) == VIRT_TYPES
