"""The console proxy and the console subresources: their Deployments, Services, APIService and
RBAC, the certificates the operator issues them, and the values that shape them."""

from __future__ import annotations

import json

import pytest

from kubenova.certs import renewal
from kubenova.subresources import manifests
from tests.unit.chart.chartlib import CHART, NAMESPACE, container, env_of, volumes_of

APISERVICE = "v1.subresources.compute.kubenova.io"
OFF = {"enabled": False}


def _certificates(rendered) -> renewal.RenewalSettings:
    env = env_of(container(rendered.get("Deployment", "kubenova-operator"), "operator"))
    return renewal.RenewalSettings.from_env(
        {name: var["value"] for name, var in env.items() if "value" in var}
    )


def test_should_run_the_console_proxy_and_the_subresources_server_by_default(render) -> None:
    rendered = render()
    for name in ("kubenova-console", "kubenova-subresources"):
        assert rendered.get("Deployment", name)["spec"]["replicas"] == 1
        assert rendered.get("Service", name)["spec"]["ports"][0]["name"] == "https"
    assert rendered.get("APIService", APISERVICE)
    assert rendered.get("ClusterRole", "kubenova-console-user")


def test_should_leave_out_each_server_whose_switch_is_off(render) -> None:
    rendered = render({"console": OFF, "subresources": OFF})
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in rendered}
    assert not [pair for pair in names if "console" in pair[1] or "subresources" in pair[1]]
    assert rendered.of_kind("APIService") == []
    env = env_of(container(rendered.get("Deployment", "kubenova-operator"), "operator"))
    assert "KUBENOVA_CERTIFICATES" not in env
    rules = rendered.get("ClusterRole", "kubenova-operator")["rules"]
    assert not [rule for rule in rules if "apiservices" in rule["resources"]]

    console_only = render({"subresources": OFF})
    assert console_only.get("Deployment", "kubenova-console")
    assert [spec.secret for spec in _certificates(console_only).certificates] == [
        "kubenova-console-tls",
        "kubenova-console-x509",
    ]
    assert _certificates(console_only).apiservices == ()


def test_should_have_the_operator_issue_every_certificate_the_servers_mount(render) -> None:
    rendered = render({"certificates": {"lifetimeHours": 48, "checkIntervalSeconds": 60}})
    settings = _certificates(rendered)
    by_secret = {spec.secret: spec for spec in settings.certificates}
    assert settings.apiservices == (APISERVICE,)
    assert settings.check_interval_s == 60
    assert {spec.validity.total_seconds() for spec in by_secret.values()} == {48 * 3600}
    mounted = {
        volume["secret"]["secretName"]
        for name in ("kubenova-console", "kubenova-subresources")
        for volume in volumes_of(rendered.get("Deployment", name)).values()
        if "secret" in volume
    }
    # Every certificate they mount; the SPICE ticket key is a generated secret, no certificate.
    assert mounted - {"kubenova-spice-ticket"} == set(by_secret)
    assert by_secret["kubenova-console-x509"].purpose.value == "console-client"
    # The kube-apiserver checks the aggregated server's certificate for NAME.NAMESPACE.svc.
    assert (
        f"kubenova-subresources.{NAMESPACE}.svc" in by_secret["kubenova-subresources-tls"].dns_names
    )
    assert f"kubenova-console.{NAMESPACE}.svc" in by_secret["kubenova-console-tls"].dns_names


def test_should_point_console_urls_at_the_public_url_and_certify_its_host(render) -> None:
    default = render()
    env = env_of(container(default.get("Deployment", "kubenova-subresources"), "subresources"))
    assert env["KUBENOVA_CONSOLE_PUBLIC_URL"]["value"] == (
        f"https://kubenova-console.{NAMESPACE}.svc:6080"
    )
    public = render(
        {
            "console": {
                "publicUrl": "https://console.example.com:8443/",
                "extraDnsNames": ["vnc.lab"],
            }
        }
    )
    env = env_of(container(public.get("Deployment", "kubenova-subresources"), "subresources"))
    assert env["KUBENOVA_CONSOLE_PUBLIC_URL"]["value"] == "https://console.example.com:8443"
    (serving,) = [
        s for s in _certificates(public).certificates if s.secret == "kubenova-console-tls"
    ]
    assert {"console.example.com", "vnc.lab"} <= set(serving.dns_names)


def test_should_pass_the_allowed_origins_and_serve_tls_from_the_issued_secret(render) -> None:
    origins = ["https://dashboard.example.com", "https://ops.example.com:8443"]
    rendered = render({"console": {"allowedOrigins": origins}})
    proxy = container(rendered.get("Deployment", "kubenova-console"), "console")
    env = env_of(proxy)
    assert env["KUBENOVA_CONSOLE_ALLOWED_ORIGINS"]["value"] == ",".join(origins)
    mounts = {mount["name"]: mount["mountPath"] for mount in proxy["volumeMounts"]}
    assert env["KUBENOVA_CONSOLE_TLS_CERT"]["value"] == f"{mounts['serving-certificate']}/tls.crt"
    assert env["KUBENOVA_CONSOLE_X509_DIR"]["value"] == mounts["client-certificate"]
    assert env["KUBENOVA_DB_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kubenova-mariadb"


def test_should_set_the_console_service_type_and_node_port(render) -> None:
    service = render({"console": {"service": {"type": "NodePort", "port": 443, "nodePort": 30643}}})
    spec = service.get("Service", "kubenova-console")["spec"]
    assert spec["type"] == "NodePort"
    assert spec["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP", "nodePort": 30643}
    ]


def test_should_register_the_apiservice_that_manifests_builds_without_a_ca_bundle(render) -> None:
    rendered = render()
    chart = rendered.get("APIService", APISERVICE)
    built = manifests.apiservice(NAMESPACE, b"unused")
    del built["spec"]["caBundle"]
    # The operator writes the caBundle; without one the kube-apiserver trusts no certificate.
    assert chart["spec"] == {**built["spec"], "insecureSkipTLSVerify": False}
    assert chart["spec"]["service"]["name"] == "kubenova-subresources"


def test_should_grant_console_users_what_manifests_grants_and_aggregate_it(render) -> None:
    role = render().get("ClusterRole", "kubenova-console-user")
    built = manifests.console_user_role()
    assert role["rules"] == built["rules"]
    for label, value in built["metadata"]["labels"].items():
        assert role["metadata"]["labels"][label] == value
    alone = render({"subresources": {"aggregateToEdit": False}})
    labels = alone.get("ClusterRole", "kubenova-console-user")["metadata"]["labels"]
    assert not [label for label in labels if label.startswith("rbac.authorization.k8s.io/")]


def test_should_let_the_subresources_server_read_instances_and_the_front_proxy_settings(
    render,
) -> None:
    rendered = render()
    role = rendered.get("ClusterRole", "kubenova-subresources")
    assert role["rules"] == [
        {"apiGroups": ["compute.kubenova.io"], "resources": ["instances"], "verbs": ["get"]}
    ]
    reader = rendered.get("RoleBinding", "kubenova-subresources")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    subject = {"kind": "ServiceAccount", "name": "kubenova-subresources", "namespace": NAMESPACE}
    assert reader["subjects"] == [subject]
    binding = rendered.get("ClusterRoleBinding", "kubenova-subresources")
    assert binding["subjects"] == [subject]
    operator = rendered.get("ClusterRole", "kubenova-operator")
    (apiservices,) = [rule for rule in operator["rules"] if "apiservices" in rule["resources"]]
    assert apiservices["resourceNames"] == [APISERVICE]


def test_should_give_the_console_proxy_no_api_token(render) -> None:
    rendered = render()
    assert (
        rendered.get("ServiceAccount", "kubenova-console")["automountServiceAccountToken"] is False
    )
    pod = rendered.get("Deployment", "kubenova-console")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"console": {"service": {"type": "Ingress"}}}, "type"),
        ({"console": {"publicUrl": "console.example.com"}}, "publicUrl"),
        ({"console": {"allowedOrigins": ["dashboard.example.com"]}}, "allowedOrigins"),
        ({"certificates": {"lifetimeHours": 2161}}, "lifetimeHours"),
        ({"subresources": {"replica": 2}}, "replica"),
        ({"console": {"enabled": "yes"}}, "enabled"),
    ],
    ids=[
        "service-type",
        "url-without-scheme",
        "origin-without-scheme",
        "too-long",
        "typo",
        "not-a-boolean",
    ],
)
def test_should_refuse_a_bad_console_value_naming_the_field(any_helm, values, field) -> None:
    result = any_helm.template(values)
    assert result.returncode != 0
    assert "schema" in result.stderr
    assert field in result.stderr, result.stderr


def test_should_lint_cleanly_with_the_console_servers_off(any_helm) -> None:
    result = any_helm.run(
        "lint", "--strict", str(CHART), "--set", "console.enabled=false,subresources.enabled=false"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout


def test_should_render_the_certificates_as_json_the_operator_reads(render) -> None:
    env = env_of(container(render().get("Deployment", "kubenova-operator"), "operator"))
    listed = json.loads(env["KUBENOVA_CERTIFICATES"]["value"])
    assert {item["purpose"] for item in listed} == {"serving", "console-client"}


def test_should_keep_service_variables_out_of_the_console_servers_settings(render) -> None:
    # Kubernetes would set KUBENOVA_CONSOLE_PORT=tcp://... for the Service kubenova-console,
    # the very name of the proxy's port setting (and likewise KUBENOVA_SUBRESOURCES_PORT).
    rendered = render()
    for name in ("kubenova-console", "kubenova-subresources"):
        pod = rendered.get("Deployment", name)["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False
