"""The EC2 API in the chart: its Deployment, Service and RBAC, the certificate the operator
issues it, and the ConfigMap kube-public/kubenova-ec2-api that tells `kubectl nova
ec2-credentials create` where it is (the operator adds the CA to it)."""

from __future__ import annotations

import pytest

from kubenova.certs import renewal, trust_configmaps
from kubenova.cli import ec2_credentials
from kubenova.ec2 import settings as ec2_settings
from kubenova.ec2 import tag_store
from tests.unit.chart.chartlib import CHART, NAMESPACE, container, env_of, volumes_of

ON = {"ec2Api": {"enabled": True}}
NAME = "kubenova-ec2-api"
OPERATOR = "kubenova-operator"
ENDPOINT = (ec2_credentials.ENDPOINT_CONFIGMAP_NAMESPACE, ec2_credentials.ENDPOINT_CONFIGMAP_NAME)


def _with(**ec2: object) -> dict[str, object]:
    return {"ec2Api": {"enabled": True, **ec2}}


def _plain_env(deployment, name: str) -> dict[str, str]:
    env = env_of(container(deployment, name))
    return {key: var["value"] for key, var in env.items() if "value" in var}


def _renewal(rendered) -> renewal.RenewalSettings:
    return renewal.RenewalSettings.from_env(
        _plain_env(rendered.get("Deployment", OPERATOR), "operator")
    )


def _endpoint_configmap(rendered):
    namespace, name = ENDPOINT
    (found,) = [
        obj
        for obj in rendered.of_kind("ConfigMap")
        if (obj["metadata"]["namespace"], obj["metadata"]["name"]) == (namespace, name)
    ]
    return found


def _rules(role) -> dict[tuple[str, str], list[str]]:
    return {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_should_leave_the_ec2_api_out_unless_enabled(render) -> None:
    rendered = render()
    assert not [obj for obj in rendered if "ec2-api" in obj["metadata"]["name"]]
    assert not [obj for obj in rendered if obj["metadata"].get("namespace") == "kube-public"]
    assert _renewal(rendered).configmaps == ()


def test_should_run_kubenova_ec2_api_from_the_operator_image_with_settings_it_accepts(
    render,
) -> None:
    rendered = render(ON)
    deployment = rendered.get("Deployment", NAME)
    server = container(deployment, "ec2-api")
    assert server["command"] == ["kubenova-ec2-api"]
    operator_image = container(rendered.get("Deployment", OPERATOR), "operator")["image"]
    assert server["image"] == operator_image
    # The server itself reads the rendered environment, and takes it.
    config = ec2_settings.Ec2Settings.from_env(_plain_env(deployment, "ec2-api"))
    assert config.listen_port == 8788
    assert config.region == "kubenova"
    assert config.public_url == f"https://{NAME}.{NAMESPACE}.svc:8788"
    mounts = {mount["name"]: mount["mountPath"] for mount in server["volumeMounts"]}
    assert str(config.tls_cert_file) == f"{mounts['serving-certificate']}/tls.crt"
    assert str(config.tls_key_file) == f"{mounts['serving-certificate']}/tls.key"
    assert server["ports"] == [{"name": "https", "containerPort": 8788}]
    assert server["readinessProbe"]["tcpSocket"]["port"] == "https"
    assert server["livenessProbe"]["tcpSocket"]["port"] == "https"
    service = rendered.get("Service", NAME)["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "https", "port": 8788, "targetPort": "https", "protocol": "TCP"}
    ]
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_should_give_the_server_the_database_the_other_servers_read(render) -> None:
    rendered = render(ON)
    env = env_of(container(rendered.get("Deployment", NAME), "ec2-api"))
    operator_env = env_of(container(rendered.get("Deployment", OPERATOR), "operator"))
    # The one database user of the chart, from the Secret the operator's URL comes from.
    assert env["KUBENOVA_DB_URL"]["valueFrom"] == operator_env["KUBENOVA_DB_URL"]["valueFrom"]
    assert env["KUBENOVA_DB_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kubenova-mariadb"
    # The server takes the URL the Secret holds, and shows terminated instances for an hour.
    url = "mysql+pymysql://kubenova:pw@kubenova-mariadb:3306/nova"
    config = ec2_settings.Ec2Settings.from_env(
        {**_plain_env(rendered.get("Deployment", NAME), "ec2-api"), "KUBENOVA_DB_URL": url}
    )
    assert config.database_url == url
    assert config.terminated_visible_s == 3600
    external = render(
        {
            **ON,
            "mariadb": {"enabled": False},
            "externalDatabase": {"existingSecret": "our-db", "secretKey": "dsn"},
        }
    )
    env = env_of(container(external.get("Deployment", NAME), "ec2-api"))
    assert env["KUBENOVA_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "our-db", "key": "dsn"}


def test_should_let_the_server_into_mariadb_when_policies_are_on(render) -> None:
    rendered = render({"networkPolicy": {"enabled": True}, **ON})
    (rule,) = rendered.get("NetworkPolicy", "kubenova-mariadb")["spec"]["ingress"]
    components = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                  for peer in rule["from"]]  # fmt: skip
    assert "ec2-api" in components
    server_labels = rendered.get("Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    (peer,) = [p for p in rule["from"] if p["podSelector"]["matchLabels"].get(
        "app.kubernetes.io/component") == "ec2-api"]  # fmt: skip
    assert peer["podSelector"]["matchLabels"].items() <= server_labels.items()
    # Its own policy limits what comes in, not what goes out.
    assert rendered.get("NetworkPolicy", NAME)["spec"]["policyTypes"] == ["Ingress"]


def test_should_run_the_server_unprivileged_on_a_read_only_root_as_its_own_account(
    render,
) -> None:
    rendered = render(ON)
    pod = rendered.get("Deployment", NAME)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME
    assert rendered.get("ServiceAccount", NAME)
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    context = container(rendered.get("Deployment", NAME), "ec2-api")["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_should_have_the_operator_issue_the_certificate_the_server_mounts(render) -> None:
    rendered = render(ON)
    by_secret = {spec.secret: spec for spec in _renewal(rendered).certificates}
    volume = volumes_of(rendered.get("Deployment", NAME))["serving-certificate"]
    spec = by_secret[volume["secret"]["secretName"]]
    assert spec.purpose.value == "serving"
    assert set(spec.dns_names) == {
        NAME,
        f"{NAME}.{NAMESPACE}",
        f"{NAME}.{NAMESPACE}.svc",
        f"{NAME}.{NAMESPACE}.svc.cluster.local",
    }


def test_should_issue_the_certificate_even_with_the_console_servers_off(render) -> None:
    off = {"enabled": False}
    rendered = render({"console": off, "subresources": off, **ON})
    assert [spec.secret for spec in _renewal(rendered).certificates] == ["kubenova-ec2-api-tls"]
    assert _renewal(rendered).apiservices == ()


def test_should_publish_and_certify_the_public_url(render) -> None:
    rendered = render(
        _with(
            publicUrl="https://ec2.example.com:443/",
            extraDnsNames=["ec2.lab"],
            region="lab-1",
            service={"type": "NodePort", "port": 443, "nodePort": 30788},
        )
    )
    config = ec2_settings.Ec2Settings.from_env(
        _plain_env(rendered.get("Deployment", NAME), "ec2-api")
    )
    assert config.public_url == "https://ec2.example.com:443"
    assert config.region == "lab-1"
    assert _endpoint_configmap(rendered)["data"] == {
        "endpoint": "https://ec2.example.com:443",
        "region": "lab-1",
    }
    (spec,) = [s for s in _renewal(rendered).certificates if s.secret == "kubenova-ec2-api-tls"]
    assert {"ec2.example.com", "ec2.lab", f"{NAME}.{NAMESPACE}.svc"} <= set(spec.dns_names)
    assert rendered.get("Service", NAME)["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP", "nodePort": 30788}
    ]


def test_should_publish_where_the_cli_looks_and_leave_the_ca_to_the_operator(render) -> None:
    rendered = render(ON)
    configmap = _endpoint_configmap(rendered)
    # The server's own URL and region, the keys the plugin reads; ca.crt is the operator's.
    server = _plain_env(rendered.get("Deployment", NAME), "ec2-api")
    assert configmap["data"] == {
        "endpoint": server["KUBENOVA_EC2_PUBLIC_URL"],
        "region": server["KUBENOVA_EC2_REGION"],
    }
    assert trust_configmaps.CA_KEY not in configmap["data"]
    namespace, name = ENDPOINT
    assert _renewal(rendered).configmaps == (trust_configmaps.ConfigMapRef(namespace, name),)


def test_should_let_the_operator_keep_the_ca_of_that_configmap_only(render) -> None:
    rendered = render(ON)
    namespace, name = ENDPOINT
    role = rendered.get("Role", "kubenova-operator-ec2-api-endpoint")
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [name],
            "verbs": ["get", "patch"],
        }
    ]
    binding = rendered.get("RoleBinding", "kubenova-operator-ec2-api-endpoint")
    assert binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}
    ]


def test_should_let_every_authenticated_user_read_that_configmap_only(render) -> None:
    rendered = render(ON)
    namespace, name = ENDPOINT
    role = rendered.get("Role", "kubenova-ec2-api-endpoint-reader")
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name], "verbs": ["get"]}
    ]
    binding = rendered.get("RoleBinding", "kubenova-ec2-api-endpoint-reader")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}
    ]


def test_should_grant_the_server_each_verb_it_uses_and_nothing_more(render) -> None:
    rendered = render(ON)
    group = "compute.kubenova.io"
    rules = rendered.get("ClusterRole", NAME)["rules"]
    named = [rule for rule in rules if "resourceNames" in rule]
    assert _rules({"rules": [rule for rule in rules if rule not in named]}) == {
        (group, "instances"): ["create", "delete", "get", "list", "patch"],
        (group, "flavors"): ["get", "list"],  # get: RunInstances' InstanceType
        (group, "images"): ["list"],
        (group, "hypervisors"): ["list"],
        # RunInstances: the room the namespace's quotas leave for Instances.
        ("", "resourcequotas"): ["list"],
        # CreateImage: the InstanceSnapshot, and those of its name; DescribeImages: pending ones.
        (group, "instancesnapshots"): ["create", "list"],
        # list: the access keys, across namespaces, and the key pairs; create, delete: these;
        # patch: a key pair's tags.
        ("", "secrets"): ["create", "delete", "list", "patch"],
        ("", "configmaps"): ["create"],
        ("subresources.compute.kubenova.io", "instances/consolelog"): ["get"],
    }
    # The image tags' ConfigMap, by the name the server reads and patches.
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [tag_store.IMAGE_TAGS_CONFIG_MAP],
            "verbs": ["get", "patch"],
        }
    ]
    binding = rendered.get("ClusterRoleBinding", NAME)
    assert binding["roleRef"]["name"] == NAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]


def test_should_let_clients_in_on_the_https_port_only(render) -> None:
    assert render(ON).find("NetworkPolicy", NAME) is None
    policy = render({"networkPolicy": {"enabled": True}, **ON}).get("NetworkPolicy", NAME)
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "https", "protocol": "TCP"}]}]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "ec2-api"
    )


def test_should_tell_how_to_get_credentials_after_install(helm) -> None:
    install = ("install", "kubenova", str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    result = helm.run(*install, values=ON)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert 'eval "$(kubectl nova ec2-credentials create -n NAMESPACE)"' in notes
    assert f"https://{NAME}.{NAMESPACE}.svc:8788" in notes


@pytest.mark.parametrize(
    ("ec2", "field"),
    [
        ({"region": "US-East-1"}, "region"),
        ({"publicUrl": "ec2.example.com"}, "publicUrl"),
        ({"service": {"type": "Ingress"}}, "type"),
        ({"replicas": 0}, "replicas"),
        ({"extraDnsName": ["x"]}, "extraDnsName"),
    ],
    ids=["upper-case-region", "url-without-scheme", "service-type", "no-replica", "typo"],
)
def test_should_refuse_a_bad_ec2_value_naming_the_field(any_helm, ec2, field) -> None:
    result = any_helm.template(_with(**ec2))
    assert result.returncode != 0
    assert "schema" in result.stderr
    assert field in result.stderr, result.stderr


def test_should_lint_cleanly_with_the_ec2_api_on(any_helm) -> None:
    result = any_helm.run("lint", "--strict", str(CHART), "--set", "ec2Api.enabled=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
