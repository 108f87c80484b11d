"""The certificate pass when cert-manager issues: no CA made, nothing issued, and the union of
the CAs in cert-manager's Secrets published wherever the operator's own bundle goes (the
ConfigMap kubenova-ca, the APIService's caBundle, the trust ConfigMaps)."""

from __future__ import annotations

import json

from kubenova.certs import authority, renewal, store, trust_configmaps
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeObjects
from tests.unit.certs.test_certificate_renewal_pass import APISERVICE, CERTIFICATES, FakeAPIServices
from tests.unit.certs.test_trust_configmaps import FakeTrustConfigMaps

ENDPOINT = trust_configmaps.ConfigMapRef("kube-public", "kubenova-ec2-api")
SECRETS = ("kubenova-cm-ca", "kubenova-console-tls", "kubenova-console-x509")


def _env(**more: str) -> dict[str, str]:
    return {
        "POD_NAMESPACE": "kubenova",
        "KUBENOVA_CERTIFICATES_ISSUER": "cert-manager",
        "KUBENOVA_CERTIFICATES_ISSUER_REF": json.dumps({"name": "kubenova-ca-issuer"}),
        "KUBENOVA_CERTIFICATES_TRUST_SECRETS": ",".join(SECRETS),
        "KUBENOVA_CERTIFICATES_APISERVICES": APISERVICE,
        "KUBENOVA_CERTIFICATES_CONFIGMAPS": str(ENDPOINT),
        **more,
    }


def _renewer(
    objs: FakeObjects, apiservices: FakeAPIServices, configmaps: FakeTrustConfigMaps, **env: str
) -> renewal.Renewer:
    settings = renewal.RenewalSettings.from_env(_env(**env))
    return renewal.Renewer(settings, objs, apiservices, configmaps=configmaps)


def _cert_manager_secret(objs: FakeObjects, name: str, ca: authority.KeyPair) -> None:
    leaf = authority.issue_server_cert(ca, [name])
    objs.put(
        "Secret",
        objects.StoredObject(
            name=name,
            data={"tls.crt": leaf.cert_pem(), "tls.key": leaf.key_pem(), "ca.crt": ca.cert_pem()},
            type="kubernetes.io/tls",
        ),
    )


def _fakes() -> tuple[FakeObjects, FakeAPIServices, FakeTrustConfigMaps]:
    configmaps = FakeTrustConfigMaps()
    configmaps.data[ENDPOINT] = {"endpoint": "https://ec2"}
    return FakeObjects(), FakeAPIServices(APISERVICE), configmaps


def test_the_pass_makes_no_ca_issues_nothing_and_publishes_cert_managers_ca() -> None:
    objs, apiservices, configmaps = _fakes()
    ca = authority.issue_ca("cert-manager-ca")
    for name in SECRETS:
        _cert_manager_secret(objs, name, ca)
    before = {key: obj.data for key, obj in objs.items.items() if key[0] == "Secret"}
    outcomes = _renewer(objs, apiservices, configmaps).run_once()
    assert outcomes == []
    assert ("Secret", store.CA_NAME) not in objs.items
    # cert-manager's Secrets are read, never written.
    assert {key: obj.data for key, obj in objs.items.items() if key[0] == "Secret"} == before
    assert objs.items[("ConfigMap", store.CA_NAME)].data["ca.crt"] == ca.cert_pem()
    assert apiservices.bundles[APISERVICE] == ca.cert_pem()
    assert configmaps.data[ENDPOINT]["ca.crt"] == ca.cert_pem().decode()


def test_during_a_ca_change_the_bundle_is_both_cas() -> None:
    objs, apiservices, configmaps = _fakes()
    old, new = authority.issue_ca("old"), authority.issue_ca("new")
    _cert_manager_secret(objs, "kubenova-cm-ca", new)
    _cert_manager_secret(objs, "kubenova-console-tls", old)
    _cert_manager_secret(objs, "kubenova-console-x509", new)
    renewer = _renewer(objs, apiservices, configmaps)
    renewer.run_once()
    assert apiservices.bundles[APISERVICE] == new.cert_pem() + old.cert_pem()
    # Once the last Secret carries the new CA, the old one leaves the bundle.
    _cert_manager_secret(objs, "kubenova-console-tls", new)
    renewer.run_once()
    assert objs.items[("ConfigMap", store.CA_NAME)].data["ca.crt"] == new.cert_pem()
    assert apiservices.bundles[APISERVICE] == new.cert_pem()
    assert configmaps.data[ENDPOINT]["ca.crt"] == new.cert_pem().decode()


def test_before_cert_manager_has_issued_anything_nothing_is_published() -> None:
    objs, apiservices, configmaps = _fakes()
    assert _renewer(objs, apiservices, configmaps).run_once() == []
    assert objs.items == {}
    assert apiservices.writes == []
    assert configmaps.data[ENDPOINT] == {"endpoint": "https://ec2"}


def test_a_second_pass_writes_nothing() -> None:
    objs, apiservices, configmaps = _fakes()
    ca = authority.issue_ca()
    for name in SECRETS:
        _cert_manager_secret(objs, name, ca)
    renewer = _renewer(objs, apiservices, configmaps)
    renewer.run_once()
    objs.calls.clear()
    apiservices.writes.clear()
    renewer.run_once()
    assert [call for call in objs.calls if not call.startswith("get ")] == []
    assert apiservices.writes == []


def test_certificates_listed_for_the_operator_are_ignored_when_cert_manager_issues() -> None:
    settings = renewal.RenewalSettings.from_env(
        _env(KUBENOVA_CERTIFICATES=json.dumps(CERTIFICATES))
    )
    assert settings.certificates == ()
    assert settings.enabled
    # The trust Secrets alone turn the pass on.
    only_trust = renewal.RenewalSettings.from_env(
        {
            "KUBENOVA_CERTIFICATES_ISSUER": "cert-manager",
            "KUBENOVA_CERTIFICATES_ISSUER_REF": json.dumps({"name": "x"}),
            "KUBENOVA_CERTIFICATES_TRUST_SECRETS": "a",
        }
    )
    assert only_trust.enabled
