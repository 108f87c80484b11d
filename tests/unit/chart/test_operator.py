"""The operator's Deployment, Service and PodDisruptionBudget, as rendered by the chart."""

from __future__ import annotations

import re

from tests.unit.chart.chartlib import NAMESPACE, container, env_of

OPERATOR = "kubenova-operator"


def test_should_run_two_operator_replicas_with_leader_election(render) -> None:
    deployment = render().get("Deployment", OPERATOR)
    operator = container(deployment, "operator")
    env = env_of(operator)
    assert deployment["spec"]["replicas"] == 2
    assert operator["args"] == ["--leader-elect"]
    assert env["KUBENOVA_LEADER_ELECT_NAMESPACE"]["value"] == NAMESPACE
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_should_set_the_operator_replicas(render) -> None:
    deployment = render({"operator": {"replicas": 3}}).get("Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 3


def test_should_probe_liveness_and_readiness_on_the_health_port(render) -> None:
    operator = container(render().get("Deployment", OPERATOR), "operator")
    assert env_of(operator)["KUBENOVA_HEALTH_PORT"]["value"] == "8081"
    assert {"name": "health", "containerPort": 8081} in operator["ports"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_should_serve_metrics_on_all_addresses_behind_a_service(render) -> None:
    rendered = render()
    operator = container(rendered.get("Deployment", OPERATOR), "operator")
    env = env_of(operator)
    assert (env["KUBENOVA_METRICS_PORT"]["value"], env["KUBENOVA_METRICS_ADDR"]["value"]) == (
        "9090",
        "0.0.0.0",
    )
    ports = {p["name"]: p for p in rendered.get("Service", OPERATOR)["spec"]["ports"]}
    assert (ports["metrics"]["port"], ports["metrics"]["targetPort"]) == (9090, "metrics")


def test_should_turn_metrics_off_with_port_zero(render) -> None:
    rendered = render({"metrics": {"enabled": False}})
    operator = container(rendered.get("Deployment", OPERATOR), "operator")
    assert env_of(operator)["KUBENOVA_METRICS_PORT"]["value"] == "0"
    assert "metrics" not in {p["name"] for p in rendered.get("Service", OPERATOR)["spec"]["ports"]}


def test_should_read_the_database_and_queue_urls_from_secrets(render) -> None:
    operator = container(render().get("Deployment", OPERATOR), "operator")
    env = env_of(operator)
    assert env["KUBENOVA_DB_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "kubenova-mariadb",
        "key": "url",
    }
    assert env["KUBENOVA_AMQP_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "kubenova-rabbitmq",
        "key": "url",
    }


def test_should_never_put_a_password_in_a_config_map_or_a_plain_env_value(render) -> None:
    # A URL with a user and a password, or a password assigned in a settings file.
    credentials = re.compile(r"://[^/\s:@]+:[^/\s@]+@|pass(word)?\s*=", re.IGNORECASE)
    for values in ({}, {"mariadb": {"enabled": False}, "externalDatabase": {"url": "x"}}):
        rendered = render(values)
        for config_map in rendered.of_kind("ConfigMap"):
            for key, text in config_map.get("data", {}).items():
                assert not credentials.search(text), key
        for owner in rendered:
            pod = owner.get("spec", {}).get("template", {}).get("spec", {})
            for spec in pod.get("containers", []) + pod.get("initContainers", []):
                for var in spec.get("env", []):
                    assert not credentials.search(str(var.get("value", ""))), var["name"]


def test_should_migrate_the_schema_in_an_init_container_before_the_operator_starts(render):
    deployment = render().get("Deployment", OPERATOR)
    db_sync = container(deployment, "db-sync", init=True)
    assert db_sync["command"] == ["kubenova-manage", "db", "sync"]
    assert db_sync["image"] == container(deployment, "operator")["image"]
    assert "secretKeyRef" in env_of(db_sync)["KUBENOVA_DB_URL"]["valueFrom"]
    assert render({"operator": {"dbSync": False}}).get("Deployment", OPERATOR)["spec"]["template"][
        "spec"
    ].get("initContainers") in (None, [])


def test_should_run_the_operator_unprivileged_on_a_read_only_root(render) -> None:
    deployment = render().get("Deployment", OPERATOR)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for spec in (container(deployment, "operator"), container(deployment, "db-sync", init=True)):
        security = spec["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert spec["resources"]["requests"]
        assert spec["resources"]["limits"]


def test_should_keep_one_operator_replica_through_a_drain(render) -> None:
    budget = render().get("PodDisruptionBudget", OPERATOR)
    deployment = render().get("Deployment", OPERATOR)
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_should_prefer_to_spread_operator_replicas_across_nodes(render) -> None:
    pod = render().get("Deployment", OPERATOR)["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "operator"
    )


def test_should_serve_agent_credentials_on_8443_of_the_operator_service(render) -> None:
    ports = {p["name"]: p for p in render().get("Service", OPERATOR)["spec"]["ports"]}
    assert (ports["agent-creds"]["port"], ports["agent-creds"]["targetPort"]) == (
        8443,
        "agent-creds",
    )
