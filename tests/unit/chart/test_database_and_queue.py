"""The bundled MariaDB and RabbitMQ, their Secrets, and external replacements."""

from __future__ import annotations

import pytest

from tests.unit.chart.chartlib import NAMESPACE, container, env_of, volumes_of

MARIADB = "kubenova-mariadb"
RABBITMQ = "kubenova-rabbitmq"


@pytest.mark.parametrize("name", [MARIADB, RABBITMQ])
def test_should_run_one_replica_on_a_persistent_volume_claim_by_default(render, name) -> None:
    statefulset = render().get("StatefulSet", name)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert statefulset["spec"]["replicas"] == 1
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert "storageClassName" not in claim["spec"]
    assert "data" not in volumes_of(statefulset)


@pytest.mark.parametrize("component", ["mariadb", "rabbitmq"])
def test_should_set_the_claims_size_and_storage_class(render, component) -> None:
    values = {component: {"persistence": {"size": "20Gi", "storageClass": "fast"}}}
    statefulset = render(values).get("StatefulSet", f"kubenova-{component}")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert (claim["spec"]["storageClassName"], claim["spec"]["resources"]["requests"]) == (
        "fast",
        {"storage": "20Gi"},
    )


@pytest.mark.parametrize("component", ["mariadb", "rabbitmq"])
def test_should_keep_data_in_an_empty_dir_when_persistence_is_off(render, component) -> None:
    values = {component: {"persistence": {"enabled": False}}}
    statefulset = render(values).get("StatefulSet", f"kubenova-{component}")
    assert "volumeClaimTemplates" not in statefulset["spec"]
    assert volumes_of(statefulset)["data"] == {"name": "data", "emptyDir": {}}


@pytest.mark.parametrize(
    ("component", "path"), [("mariadb", "/var/lib/mysql"), ("rabbitmq", "/var/lib/rabbitmq")]
)
def test_should_hand_a_host_path_to_the_servers_user(render, component, path) -> None:
    values = {component: {"persistence": {"hostPath": f"/srv/{component}"}}}
    statefulset = render(values).get("StatefulSet", f"kubenova-{component}")
    assert "volumeClaimTemplates" not in statefulset["spec"]
    assert volumes_of(statefulset)["data"]["hostPath"]["path"] == f"/srv/{component}"
    chown = container(statefulset, "volume-permissions", init=True)
    assert chown["command"] == ["chown", "999:999", path]
    assert chown["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}


def test_should_keep_generated_passwords_through_upgrades_and_uninstall(render) -> None:
    rendered = render()
    for name in (MARIADB, RABBITMQ):
        secret = rendered.get("Secret", name)
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        password = secret["stringData"]["password"]
        assert len(password) == 32
        assert password.isalnum()
        assert f":{password}@" in secret["stringData"]["url"]


def test_should_give_mariadb_its_user_and_database_from_the_secret(render) -> None:
    rendered = render()
    secret = rendered.get("Secret", MARIADB)["stringData"]
    assert secret["url"] == (
        f"mysql+pymysql://kubenova:{secret['password']}@{MARIADB}.{NAMESPACE}.svc:3306/nova"
        "?charset=utf8mb4"
    )
    assert f"ALTER USER 'kubenova'@'%' IDENTIFIED BY '{secret['password']}';" in secret["init.sql"]
    config = rendered.get("ConfigMap", MARIADB)["data"]["99-kubenova.cnf"]
    assert "init-file = /etc/kubenova/mariadb/init.sql" in config
    assert "bind-address = 0.0.0.0" in config


def test_should_make_the_operator_a_rabbitmq_administrator_of_its_vhost(render) -> None:
    secret = render().get("Secret", RABBITMQ)["stringData"]
    config = secret["90-kubenova.conf"]
    for line in (
        "default_vhost = kubenova",
        "default_user = kubenova-operator",
        f"default_pass = {secret['password']}",
        "default_user_tags.administrator = true",
    ):
        assert line in config.splitlines()
    statefulset = render().get("StatefulSet", RABBITMQ)
    mounts = {m["name"]: m for m in container(statefulset, "rabbitmq")["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/rabbitmq/conf.d/90-kubenova.conf"


def test_should_expose_amqp_and_management_and_mysql_as_services(render) -> None:
    rendered = render()
    rabbit_ports = {
        p["name"]: p["port"] for p in rendered.get("Service", RABBITMQ)["spec"]["ports"]
    }
    assert rabbit_ports == {"amqp": 5672, "management": 15672}
    mysql_ports = {p["name"]: p["port"] for p in rendered.get("Service", MARIADB)["spec"]["ports"]}
    assert mysql_ports == {"mysql": 3306}


def test_should_use_an_external_database_from_an_existing_secret(render) -> None:
    values = {
        "mariadb": {"enabled": False},
        "externalDatabase": {"existingSecret": "our-db", "secretKey": "dsn"},
        "rabbitmq": {"enabled": False},
        "externalRabbitmq": {"url": "amqp://op:pw@mq.example.com:5672/kubenova"},
    }
    rendered = render(values)
    assert rendered.find("StatefulSet", MARIADB) is None
    assert rendered.find("Secret", MARIADB) is None
    assert rendered.find("StatefulSet", RABBITMQ) is None
    env = env_of(container(rendered.get("Deployment", "kubenova-operator"), "operator"))
    assert env["KUBENOVA_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "our-db", "key": "dsn"}
    assert env["KUBENOVA_AMQP_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "kubenova-external-rabbitmq",
        "key": "url",
    }
    secret = rendered.get("Secret", "kubenova-external-rabbitmq")
    assert secret["stringData"]["url"] == "amqp://op:pw@mq.example.com:5672/kubenova"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mariadb": {"enabled": False}}, "set externalDatabase.url or externalDatabase"),
        ({"rabbitmq": {"enabled": False}}, "set externalRabbitmq.url or externalRabbitmq"),
        (
            {
                "mariadb": {"enabled": False},
                "externalDatabase": {"url": "mysql+pymysql://a:b@c/d", "existingSecret": "s"},
            },
            "externalDatabase: set url or existingSecret, not both",
        ),
    ],
)
def test_should_refuse_a_missing_or_doubled_external_service(helm, values, message) -> None:
    result = helm.template(values)
    assert result.returncode != 0
    assert message in result.stderr
