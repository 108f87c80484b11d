"""Who issues the certificates, from the environment the chart renders; errors name the
variable."""

from __future__ import annotations

import json
import re

import pytest

from kubenova.certs import cert_manager, issuer_settings

REF = json.dumps({"name": "kubenova-ca-issuer", "kind": "Issuer", "group": "cert-manager.io"})


def test_the_operator_issues_by_default() -> None:
    settings = issuer_settings.IssuerSettings.from_env({})
    assert settings.issuer is issuer_settings.Issuer.OPERATOR
    assert not settings.cert_manager
    assert settings.issuer_ref is None
    # The other variables mean nothing then.
    ignored = issuer_settings.IssuerSettings.from_env(
        {"KUBENOVA_CERTIFICATES_ISSUER": "operator", "KUBENOVA_CERTIFICATES_TRUST_SECRETS": "a"}
    )
    assert ignored.trust_secrets == ()


def test_cert_manager_with_its_issuer_and_the_secrets_to_trust() -> None:
    settings = issuer_settings.IssuerSettings.from_env(
        {
            "KUBENOVA_CERTIFICATES_ISSUER": "cert-manager",
            "KUBENOVA_CERTIFICATES_ISSUER_REF": REF,
            "KUBENOVA_CERTIFICATES_TRUST_SECRETS": " kubenova-cm-ca, kubenova-console-tls ,",
        }
    )
    assert settings.cert_manager
    assert settings.issuer_ref == cert_manager.IssuerRef("kubenova-ca-issuer")
    assert settings.trust_secrets == ("kubenova-cm-ca", "kubenova-console-tls")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KUBENOVA_CERTIFICATES_ISSUER": "vault"},
            "KUBENOVA_CERTIFICATES_ISSUER must be one of operator, cert-manager, not 'vault'",
        ),
        (
            {"KUBENOVA_CERTIFICATES_ISSUER": "cert-manager"},
            "KUBENOVA_CERTIFICATES_ISSUER_REF must name the issuer",
        ),
        (
            {
                "KUBENOVA_CERTIFICATES_ISSUER": "cert-manager",
                "KUBENOVA_CERTIFICATES_ISSUER_REF": "{name: x}",
            },
            "KUBENOVA_CERTIFICATES_ISSUER_REF is not JSON",
        ),
        (
            {
                "KUBENOVA_CERTIFICATES_ISSUER": "cert-manager",
                "KUBENOVA_CERTIFICATES_ISSUER_REF": json.dumps({"name": "x", "kind": "Vault"}),
            },
            "KUBENOVA_CERTIFICATES_ISSUER_REF.kind must be one of Issuer, ClusterIssuer",
        ),
        (
            {
                "KUBENOVA_CERTIFICATES_ISSUER": "cert-manager",
                "KUBENOVA_CERTIFICATES_ISSUER_REF": json.dumps({"kind": "Issuer"}),
            },
            "KUBENOVA_CERTIFICATES_ISSUER_REF.name must be a non-empty string",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        issuer_settings.IssuerSettings.from_env(env)
