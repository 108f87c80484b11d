"""The operator issues its servers' certificates into Secrets and issues them again at two
thirds of their life, or sooner when they no longer fit (another CA, other names); every
Secret shows its certificate's expiry as annotations."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubenova.certs import authority, bundle, console, issuer, lifetime
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeObjects

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
NAMES = ("kubenova-console", "kubenova-console.kubenova-system.svc")
SERVING = issuer.CertificateSpec(
    "kubenova-console-tls", issuer.Purpose.SERVING, NAMES, validity=30 * DAY
)
CLIENT = issuer.CertificateSpec(
    "kubenova-console-x509", issuer.Purpose.CONSOLE_CLIENT, validity=30 * DAY
)


@pytest.fixture(scope="module")
def trust() -> bundle.TrustState:
    return bundle.TrustState(authority.issue_ca(now=NOW - 400 * DAY))


@pytest.fixture
def objs() -> FakeObjects:
    return FakeObjects()


def _cert(objs: FakeObjects, spec: issuer.CertificateSpec) -> x509.Certificate:
    return x509.load_pem_x509_certificate(objs.items[("Secret", spec.secret)].data[spec.cert_key])


def _life_fraction(spec: issuer.CertificateSpec, fraction: float) -> datetime.datetime:
    """The moment ``fraction`` of a certificate issued at NOW has lived (its backdating
    included, as the renewal rule counts it)."""
    skew = datetime.timedelta(minutes=5)
    return NOW - skew + (spec.validity + skew) * fraction


def test_a_missing_certificate_is_issued_into_a_tls_secret_with_its_expiry_annotated(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    outcome = issuer.ensure(objs, SERVING, trust, NOW)
    assert (outcome.action, outcome.reason) == ("issued", "there is none")
    secret = objs.items[("Secret", SERVING.secret)]
    assert secret.type == "kubernetes.io/tls"
    assert set(secret.data) == {"tls.crt", "tls.key", "ca.crt"}
    assert secret.data["ca.crt"] == trust.bundle_pem()
    pair = authority.KeyPair.from_pem(secret.data["tls.crt"], secret.data["tls.key"])
    pair.cert.verify_directly_issued_by(trust.current.cert)
    assert pair.not_after == NOW + 30 * DAY
    assert secret.annotations["kubenova.io/not-after"] == "2031-05-31T00:00:00Z"
    assert secret.annotations["kubenova.io/renew-after"] == lifetime.rfc3339(
        lifetime.renew_after(pair.cert)
    )
    assert secret.labels["kubenova.io/certificate"] == "serving"
    san = pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(NAMES)


def test_a_certificate_at_half_its_life_is_kept_and_nothing_is_written(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    issuer.ensure(objs, SERVING, trust, NOW)
    first = _cert(objs, SERVING)
    objs.calls.clear()
    outcome = issuer.ensure(objs, SERVING, trust, _life_fraction(SERVING, 0.5))
    assert outcome.action == "kept"
    assert _cert(objs, SERVING) == first
    assert objs.calls == [f"get Secret {SERVING.secret}"]


@pytest.mark.parametrize("spec", [SERVING, CLIENT], ids=["serving", "console-client"])
def test_a_certificate_at_seventy_percent_of_its_life_is_issued_again(
    objs: FakeObjects, trust: bundle.TrustState, spec: issuer.CertificateSpec
) -> None:
    issuer.ensure(objs, spec, trust, NOW)
    first = _cert(objs, spec)
    later = _life_fraction(spec, 0.7)
    outcome = issuer.ensure(objs, spec, trust, later)
    assert outcome.action == "issued"
    assert outcome.reason.startswith("it is due for renewal since ")
    renewed = _cert(objs, spec)
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    annotations = objs.items[("Secret", spec.secret)].annotations
    assert annotations["kubenova.io/not-after"] == lifetime.rfc3339(renewed.not_valid_after_utc)


def test_the_decision_turns_at_two_thirds_of_the_life(trust: bundle.TrustState) -> None:
    pair = issuer.issue(SERVING, trust.current, NOW)
    stored = objects.StoredObject(SERVING.secret, issuer.secret_data(SERVING, pair, b""))
    due = lifetime.renew_after(pair.cert)
    assert (
        issuer.why_issue(stored, SERVING, trust.current, due - datetime.timedelta(seconds=1))
        is None
    )
    assert issuer.why_issue(stored, SERVING, trust.current, due) is not None


def test_a_certificate_another_ca_signed_is_issued_again(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    issuer.ensure(objs, SERVING, trust, NOW)
    rotated = bundle.rotate(trust, authority.issue_ca(now=NOW), NOW)
    outcome = issuer.ensure(objs, SERVING, rotated, NOW + DAY)
    assert (outcome.action, outcome.reason) == ("issued", "the current CA did not sign it")
    _cert(objs, SERVING).verify_directly_issued_by(rotated.current.cert)
    # Both CAs stay trusted during the overlap.
    assert objs.items[("Secret", SERVING.secret)].data["ca.crt"] == rotated.bundle_pem()


def test_a_serving_certificate_whose_names_changed_is_issued_again(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    issuer.ensure(objs, SERVING, trust, NOW)
    renamed = issuer.CertificateSpec(
        SERVING.secret, issuer.Purpose.SERVING, (*NAMES, "console.example.com"), 30 * DAY
    )
    outcome = issuer.ensure(objs, renamed, trust, NOW + DAY)
    assert outcome.action == "issued"
    assert "console.example.com" in outcome.reason


def test_a_new_trust_bundle_alone_refreshes_the_secret_and_keeps_the_certificate(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    issuer.ensure(objs, CLIENT, trust, NOW)
    first = _cert(objs, CLIENT)
    retiring = bundle.RetiringCA(authority.issue_ca(now=NOW).cert, NOW + 90 * DAY)
    widened = bundle.TrustState(trust.current, (retiring,))
    outcome = issuer.ensure(objs, CLIENT, widened, NOW + DAY)
    assert outcome.action == "refreshed"
    assert _cert(objs, CLIENT) == first
    assert objs.items[("Secret", CLIENT.secret)].data["ca-cert.pem"] == widened.bundle_pem()


def test_the_console_client_secret_is_the_proxys_x509_directory(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    issuer.ensure(objs, CLIENT, trust, NOW)
    secret = objs.items[("Secret", CLIENT.secret)]
    assert secret.type == "Opaque"
    assert set(secret.data) == {"ca-cert.pem", "client-cert.pem", "client-key.pem"}
    pair = authority.KeyPair.from_pem(secret.data["client-cert.pem"], secret.data["client-key.pem"])
    usage = pair.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pair.cert.subject.rfc4514_string() == f"CN={console.PROXY_COMMON_NAME}"
    assert "kubenova.io/not-after" in secret.annotations


def test_an_unreadable_secret_is_issued_again_and_keeps_what_others_put_on_it(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    objs.put(
        "Secret",
        objects.StoredObject(
            SERVING.secret,
            {"tls.crt": b"not a certificate"},
            labels={"team": "ops"},
            type="kubernetes.io/tls",
        ),
    )
    outcome = issuer.ensure(objs, SERVING, trust, NOW)
    assert outcome.action == "issued"
    assert outcome.reason.startswith("it cannot be read")
    assert objs.items[("Secret", SERVING.secret)].labels["team"] == "ops"


def test_another_issuers_secret_of_another_type_is_made_anew(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    # As cert-manager leaves the console client's Secret: kubernetes.io/tls, its own CA.
    other = authority.issue_ca("another issuer", now=NOW - DAY)
    pair = console.issue_proxy_client_cert(other, now=NOW - DAY)
    objs.put(
        "Secret",
        objects.StoredObject(
            CLIENT.secret,
            {"tls.crt": pair.cert_pem(), "tls.key": pair.key_pem(), "ca.crt": other.cert_pem()},
            type="kubernetes.io/tls",
        ),
    )
    outcome = issuer.ensure(objs, CLIENT, trust, NOW)
    assert outcome.action == "issued"
    assert [c for c in objs.calls if not c.startswith("get ")] == [
        f"delete Secret {CLIENT.secret}",
        f"create Secret {CLIENT.secret}",
    ]
    secret = objs.items[("Secret", CLIENT.secret)]
    assert secret.type == "Opaque"
    assert set(secret.data) == {"ca-cert.pem", "client-cert.pem", "client-key.pem"}
    _cert(objs, CLIENT).verify_directly_issued_by(trust.current.cert)


def test_a_certificate_another_replica_wrote_first_is_the_one_kept(
    objs: FakeObjects, trust: bundle.TrustState
) -> None:
    theirs = issuer.issue(SERVING, trust.current, NOW)
    objs.before_create = lambda: objs.put(
        "Secret",
        objects.StoredObject(
            SERVING.secret,
            issuer.secret_data(SERVING, theirs, trust.bundle_pem()),
            labels={**issuer.MANAGED_BY, issuer.CERTIFICATE_LABEL: "serving"},
            annotations=lifetime.expiry_annotations(theirs.cert),
            type="kubernetes.io/tls",
        ),
    )
    outcome = issuer.ensure(objs, SERVING, trust, NOW)
    assert outcome.action == "kept"
    assert _cert(objs, SERVING) == theirs.cert


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"secret": "s", "purpose": "serving"}, "needs DNS names"),
        ({"secret": "s", "purpose": "webhook", "dnsNames": ["a"]}, "purpose is one of"),
        ({"secret": "s", "purpose": "console-client", "validityHours": 24 * 91}, "90 days"),
        ({"purpose": "console-client"}, "name of its Secret"),
        ({"secret": "s", "purpose": "serving", "dnsNames": "a"}, "list of names"),
    ],
)
def test_a_bad_certificate_description_is_refused_saying_why(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        issuer.CertificateSpec.from_dict(raw)
