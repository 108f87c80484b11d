"""Images, names, the image server, and the optional ServiceMonitor and NetworkPolicies."""

from __future__ import annotations

import yaml

from tests.unit.chart.chartlib import CHART, ROOT, container

COMPONENT_IMAGES = {
    ("Deployment", "kubenova-operator", "operator"): "kubenova/operator",
    ("DaemonSet", "kubenova-agent", "agent"): "kubenova/node-agent",
    ("DaemonSet", "kubenova-libvirt", "libvirt"): "kubenova/libvirt",
    ("StatefulSet", "kubenova-mariadb", "mariadb"): "kubenova/mariadb",
    ("StatefulSet", "kubenova-rabbitmq", "rabbitmq"): "kubenova/rabbitmq",
    ("Deployment", "kubenova-image-server", "image-server"): "kubenova/image-server",
}


def test_should_pull_every_image_from_the_registry_at_the_charts_app_version(render) -> None:
    rendered = render()
    for (kind, name, container_name), repository in COMPONENT_IMAGES.items():
        spec = container(rendered.get(kind, name), container_name)
        assert spec["image"] == f"127.0.0.1:5000/{repository}:0.1.0"
        assert spec["imagePullPolicy"] == "IfNotPresent"


def test_should_set_registry_tag_repository_and_pull_secrets(render) -> None:
    values = {
        "image": {"registry": "registry.example.com", "tag": "1.2.3", "pullSecrets": ["pull"]},
        "agent": {"image": {"repository": "mirror/agent"}},
    }
    agent = render(values).get("DaemonSet", "kubenova-agent")
    assert container(agent, "agent")["image"] == "registry.example.com/mirror/agent:1.2.3"
    assert agent["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "pull"}]
    no_registry = render({"image": {"registry": ""}}).get("DaemonSet", "kubenova-agent")
    assert container(no_registry, "agent")["image"] == "kubenova/node-agent:0.1.0"


def test_should_serve_the_guest_image_only_when_enabled(render) -> None:
    rendered = render()
    server = rendered.get("Deployment", "kubenova-image-server")
    assert container(server, "image-server")["ports"] == [{"name": "http", "containerPort": 8080}]
    assert rendered.get("Service", "kubenova-image-server")["spec"]["ports"][0]["port"] == 8080
    off = render({"imageServer": {"enabled": False}})
    assert off.find("Deployment", "kubenova-image-server") is None
    assert off.find("Service", "kubenova-image-server") is None


def test_should_cut_every_name_to_63_characters(helm) -> None:
    release = "r" * 53  # the longest release name Helm accepts
    result = helm.template(None, release=release)
    assert result.returncode == 0, result.stderr
    for obj in (doc for doc in yaml.safe_load_all(result.stdout) if doc):
        limit = 52 if obj["kind"] == "StatefulSet" else 63
        assert len(obj["metadata"]["name"]) <= limit, obj["metadata"]["name"]
        assert not obj["metadata"]["name"].endswith("-")


def test_should_name_objects_after_fullname_override(render) -> None:
    rendered = render({"fullnameOverride": "nova"})
    assert rendered.find("Deployment", "nova-operator")
    assert rendered.find("StatefulSet", "nova-mariadb")


def test_should_create_a_service_monitor_for_the_operator_when_asked(render) -> None:
    assert render().of_kind("ServiceMonitor") == []
    values = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    (monitor,) = render(values).of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_should_refuse_a_service_monitor_without_metrics(helm) -> None:
    values = {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}
    result = helm.template(values)
    assert result.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.enabled" in result.stderr


def test_should_let_only_the_operator_and_the_console_servers_into_mariadb(render) -> None:
    assert render().of_kind("NetworkPolicy") == []
    rendered = render({"networkPolicy": {"enabled": True}})
    names = {policy["metadata"]["name"] for policy in rendered.of_kind("NetworkPolicy")}
    assert names == {
        "kubenova-operator",
        "kubenova-mariadb",
        "kubenova-rabbitmq",
        "kubenova-image-server",
        "kubenova-console",
        "kubenova-subresources",
    }
    (rule,) = rendered.get("NetworkPolicy", "kubenova-mariadb")["spec"]["ingress"]
    components = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                  for peer in rule["from"]]  # fmt: skip
    assert components == ["operator", "console", "subresources"]
    off = {"enabled": False}
    rendered = render({"networkPolicy": {"enabled": True}, "console": off, "subresources": off})
    (rule,) = rendered.get("NetworkPolicy", "kubenova-mariadb")["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_should_admit_agents_from_the_node_networks_given(render) -> None:
    peers = [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    rendered = render({"networkPolicy": {"enabled": True, "agentPeers": peers}})
    amqp, management = rendered.get("NetworkPolicy", "kubenova-rabbitmq")["spec"]["ingress"]
    assert amqp["from"][2:] == peers
    components = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                  for peer in amqp["from"][:2]]  # fmt: skip
    # The aggregated API server calls hosts for instances/consolelog.
    assert components == ["operator", "subresources"]
    assert amqp["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "operator"
    )
    assert len(management["from"]) == 1
    credentials = rendered.get("NetworkPolicy", "kubenova-operator")["spec"]["ingress"][0]
    assert credentials["from"] == peers


def test_should_render_and_lint_the_local_stacks_values(any_helm) -> None:
    local = str(ROOT / "hack" / "helm" / "values-local.yaml")
    lint = any_helm.run("lint", "--strict", str(CHART), "--values", local)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    result = any_helm.template(None, "--values", local)
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    for statefulset in (obj for obj in objects if obj["kind"] == "StatefulSet"):
        assert "volumeClaimTemplates" not in statefulset["spec"]
