"""cert-manager as the issuer of Kubenova's certificates (certificates.certManager): the
Certificates the chart renders for the Secrets the operator would otherwise issue, the chain
it renders when no issuer is named, the console hop's volume that maps cert-manager's key
names, and the operator's settings and RBAC; nothing of it when it is off."""

from __future__ import annotations

import datetime
import re

from kubenova.certs import issuer_settings, renewal
from tests.unit.chart.chartlib import NAMESPACE, container, env_of, volumes_of

OPERATOR = "kubenova-operator"
CHAIN_ISSUER = "kubenova-ca-issuer"
CHAIN_CA = "kubenova-cm-ca"
SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]
CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"]
X509_ITEMS = [
    {"key": "ca.crt", "path": "ca-cert.pem"},
    {"key": "tls.crt", "path": "client-cert.pem"},
    {"key": "tls.key", "path": "client-key.pem"},
]
# Every component whose certificate the chart renders, with names beside the Service's.
EVERYTHING = {
    "ec2Api": {
        "enabled": True,
        "publicUrl": "https://ec2.example.com",
        "extraDnsNames": ["ec2.internal"],
    },
    "console": {"publicUrl": "https://console.example.com", "extraDnsNames": ["vnc.internal"]},
}


def _on(issuer_ref: dict[str, str] | None = None, lifetime_hours: int = 720) -> dict[str, object]:
    cert_manager: dict[str, object] = {"enabled": True}
    if issuer_ref is not None:
        cert_manager["issuerRef"] = issuer_ref
    return {
        **EVERYTHING,
        "certificates": {"certManager": cert_manager, "lifetimeHours": lifetime_hours},
    }


def _cert_manager_objects(rendered) -> list[dict]:
    return [obj for obj in rendered if obj["apiVersion"].startswith("cert-manager.io/")]


def _plain_env(rendered) -> dict[str, str]:
    env = env_of(container(rendered.get("Deployment", OPERATOR), "operator"))
    return {key: var["value"] for key, var in env.items() if "value" in var}


def _go_duration(text: str) -> datetime.timedelta:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert text, "an empty duration"
    assert parts is not None, f"not a Go duration: {text!r}"
    hours, minutes, seconds = (int(part or 0) for part in parts.groups())
    return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _role_rules(rendered) -> dict[tuple[str, str], list[str]]:
    role = rendered.get("Role", OPERATOR)
    return {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_should_refuse_an_issuer_kind_other_than_issuer_or_clusterissuer(helm) -> None:
    result = helm.template(_on({"name": "corp", "kind": "Signer"}))
    assert result.returncode != 0
    assert "issuerRef" in result.stderr
    assert "kind" in result.stderr


def test_should_give_each_certificate_the_names_the_operator_would_give(render) -> None:
    # What the operator issues when it is the CA: the same Secrets, names and lifetime.
    operator_issues = renewal.RenewalSettings.from_env(_plain_env(render(EVERYTHING)))
    expected = {spec.secret: spec for spec in operator_issues.certificates}
    assert set(expected) == {
        "kubenova-console-tls",
        "kubenova-console-x509",
        "kubenova-subresources-tls",
        "kubenova-ec2-api-tls",
    }
    rendered = render(_on(lifetime_hours=48))
    leaves = {
        obj["metadata"]["name"]: obj["spec"]
        for obj in rendered.of_kind("Certificate")
        if obj["metadata"]["name"] != CHAIN_CA
    }
    assert set(leaves) == set(expected)
    for name, spec in leaves.items():
        assert spec["secretName"] == name
        assert _go_duration(spec["duration"]) == datetime.timedelta(hours=48)
        assert _go_duration(spec["renewBefore"]) == datetime.timedelta(hours=16)
        assert spec["issuerRef"] == {
            "name": CHAIN_ISSUER,
            "kind": "Issuer",
            "group": "cert-manager.io",
        }
        assert "isCA" not in spec
        if expected[name].purpose == "serving":
            assert spec["dnsNames"] == list(expected[name].dns_names)
            assert spec["usages"] == SERVING_USAGES
        else:
            assert spec["usages"] == CLIENT_USAGES
            assert spec["commonName"] == "kubenova-console-proxy"
    assert "ec2.example.com" in leaves["kubenova-ec2-api-tls"]["dnsNames"]
    assert "vnc.internal" in leaves["kubenova-console-tls"]["dnsNames"]


def test_should_issue_no_ec2_api_certificate_when_the_ec2_api_is_off(render) -> None:
    rendered = render({"certificates": {"certManager": {"enabled": True}}})
    names = {obj["metadata"]["name"] for obj in rendered.of_kind("Certificate")}
    assert names == {
        CHAIN_CA,
        "kubenova-console-tls",
        "kubenova-console-x509",
        "kubenova-subresources-tls",
    }


def test_should_render_its_own_chain_only_when_no_issuer_is_named(render) -> None:
    rendered = render(_on())
    self_signed = rendered.get("Issuer", "kubenova-selfsigned")
    assert self_signed["spec"] == {"selfSigned": {}}
    ca = rendered.get("Certificate", CHAIN_CA)["spec"]
    assert ca["isCA"] is True
    assert ca["secretName"] == CHAIN_CA != "kubenova-ca"  # not the operator's CA Secret
    assert ca["privateKey"] == {"algorithm": "ECDSA", "size": 256}
    assert _go_duration(ca["duration"]) == datetime.timedelta(hours=87600)
    assert ca["issuerRef"]["name"] == "kubenova-selfsigned"
    assert rendered.get("Issuer", CHAIN_ISSUER)["spec"] == {"ca": {"secretName": CHAIN_CA}}
    for obj in _cert_manager_objects(rendered):
        assert obj["metadata"]["namespace"] == NAMESPACE

    named = render(_on({"name": "corp-ca", "kind": "ClusterIssuer"}))
    assert named.of_kind("Issuer") == []
    assert named.find("Certificate", CHAIN_CA) is None
    for certificate in named.of_kind("Certificate"):
        assert certificate["spec"]["issuerRef"] == {
            "name": "corp-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }


def test_should_map_cert_managers_keys_to_the_console_hops_file_names(render) -> None:
    rendered = render(_on())
    for deployment, volume in (
        ("kubenova-console", "client-certificate"),
        ("kubenova-subresources", "console-client-certificate"),
    ):
        source = volumes_of(rendered.get("Deployment", deployment))[volume]["secret"]
        assert source["secretName"] == "kubenova-console-x509"
        assert source["items"] == X509_ITEMS
    # The serving certificates keep cert-manager's names, which the servers read already.
    serving = volumes_of(rendered.get("Deployment", "kubenova-console"))["serving-certificate"]
    assert "items" not in serving["secret"]


def test_should_tell_the_operator_to_issue_nothing_and_trust_cert_managers_cas(render) -> None:
    rendered = render(_on({"name": "corp-ca", "kind": "ClusterIssuer"}))
    env = _plain_env(rendered)
    settings = renewal.RenewalSettings.from_env(env)
    assert settings.certificates == ()
    assert settings.issuing.issuer is issuer_settings.Issuer.CERT_MANAGER
    assert settings.issuing.issuer_ref is not None
    assert settings.issuing.issuer_ref.as_dict() == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    leaves = {obj["spec"]["secretName"] for obj in rendered.of_kind("Certificate")}
    assert set(settings.issuing.trust_secrets) == leaves
    assert settings.apiservices == ("v1.subresources.compute.kubenova.io",)

    own_chain = renewal.RenewalSettings.from_env(_plain_env(render(_on())))
    assert own_chain.issuing.trust_secrets[0] == CHAIN_CA
    assert own_chain.issuing.issuer_ref is not None
    assert own_chain.issuing.issuer_ref.name == CHAIN_ISSUER


def test_should_let_the_operator_create_read_and_delete_certificate_requests(render) -> None:
    rendered = render(_on())
    rules = _role_rules(rendered)
    assert rules[("cert-manager.io", "certificaterequests")] == ["create", "delete", "get"]
    assert "get" in rules[("", "secrets")]
    # A Role: only the requests of the operator's own namespace.
    assert rendered.get("Role", OPERATOR)["metadata"]["namespace"] == NAMESPACE
    assert not [
        rule
        for role in rendered.of_kind("ClusterRole")
        for rule in role["rules"]
        if "cert-manager.io" in rule["apiGroups"]
    ]


def test_should_render_nothing_of_cert_manager_when_off(render) -> None:
    rendered = render(EVERYTHING)
    assert _cert_manager_objects(rendered) == []
    env = _plain_env(rendered)
    assert not [name for name in env if name.startswith("KUBENOVA_CERTIFICATES_ISSUER")]
    assert "KUBENOVA_CERTIFICATES_TRUST_SECRETS" not in env
    assert renewal.RenewalSettings.from_env(env).issuing.issuer is issuer_settings.Issuer.OPERATOR
    assert ("cert-manager.io", "certificaterequests") not in _role_rules(rendered)
    for deployment, volume in (
        ("kubenova-console", "client-certificate"),
        ("kubenova-subresources", "console-client-certificate"),
    ):
        assert "items" not in volumes_of(rendered.get("Deployment", deployment))[volume]["secret"]
