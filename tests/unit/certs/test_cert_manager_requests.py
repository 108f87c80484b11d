"""The CertificateRequest client: what it asks cert-manager for, what it hands back once a
request is signed, how it fails when cert-manager denies, fails or never answers, and that the
request is deleted whatever came of it."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubenova.certs import cert_manager
from tests.unit.certs.fake_cert_manager import Clock, FakeCertificateRequests

REF = cert_manager.IssuerRef("kubenova-ca-issuer")
USAGES = ("digital signature", "key encipherment", "server auth")


def _csr(name: str = "node-a") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def _requester(
    fake: FakeCertificateRequests, clock: Clock | None = None, timeout_s: float = 30.0
) -> cert_manager.CertificateRequester:
    clock = clock or Clock()
    return cert_manager.CertificateRequester(
        fake,
        REF,
        timeout_s=timeout_s,
        poll_s=0.5,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        suffix=lambda: "x1y2z3",
    )


def test_a_signed_request_gives_the_certificate_and_the_ca_and_is_deleted() -> None:
    fake = FakeCertificateRequests()
    csr = _csr()
    issued = _requester(fake).sign(
        "host-node-a", csr, usages=USAGES, duration=datetime.timedelta(hours=720)
    )
    (body,) = fake.created
    assert body["apiVersion"] == "cert-manager.io/v1"
    assert body["kind"] == "CertificateRequest"
    assert body["metadata"]["name"] == "host-node-a-x1y2z3"
    assert base64.b64decode(body["spec"]["request"]) == csr
    assert body["spec"]["issuerRef"] == {
        "name": "kubenova-ca-issuer",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert body["spec"]["usages"] == list(USAGES)
    assert body["spec"]["duration"] == "720h"
    certificate = x509.load_pem_x509_certificate(issued.certificate_pem)
    certificate.verify_directly_issued_by(fake.ca.cert)
    assert certificate.public_key() == x509.load_pem_x509_csr(csr).public_key()
    assert issued.ca_pem == fake.ca.cert_pem()
    assert fake.deleted == ["host-node-a-x1y2z3"]
    assert fake.items == {}


@pytest.mark.parametrize(
    ("behaviour", "said"),
    [
        ("deny", "Denied: PolicyDenied (hosts may not ask for this)"),
        ("fail", "Failed: Failed (the CA Secret has no key)"),
    ],
)
def test_a_denied_or_failed_request_is_an_error_with_cert_managers_reason(
    behaviour: str, said: str
) -> None:
    fake = FakeCertificateRequests(behaviour=behaviour)
    clock = Clock()
    with pytest.raises(cert_manager.RequestFailed) as caught:
        _requester(fake, clock).sign(
            "host-node-a", _csr(), usages=USAGES, duration=datetime.timedelta(hours=1)
        )
    assert said in str(caught.value)
    assert "host-node-a-x1y2z3" in str(caught.value)
    assert clock.sleeps == []  # no waiting once cert-manager has said no
    assert fake.deleted == ["host-node-a-x1y2z3"]


def test_a_request_nobody_answers_fails_at_the_deadline_and_is_deleted() -> None:
    fake = FakeCertificateRequests(behaviour="silent")
    clock = Clock()
    with pytest.raises(cert_manager.RequestFailed, match="not signed by Issuer kubenova-ca-issuer"):
        _requester(fake, clock, timeout_s=5.0).sign(
            "host-node-a", _csr(), usages=USAGES, duration=datetime.timedelta(hours=1)
        )
    assert clock.now == pytest.approx(5.0)
    assert fake.reads == 11  # at 0, 0.5, ... 5.0 s
    assert fake.deleted == ["host-node-a-x1y2z3"]


def test_a_pending_request_is_waited_for() -> None:
    fake = FakeCertificateRequests(behaviour="silent")
    clock = Clock()

    def sleep_then_answer(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= 2.0:
            fake.behaviour = "sign"

    requester = cert_manager.CertificateRequester(
        fake, REF, sleep=sleep_then_answer, monotonic=clock.monotonic, suffix=lambda: "a"
    )
    issued = requester.sign("x", _csr(), usages=USAGES, duration=datetime.timedelta(hours=2))
    x509.load_pem_x509_certificate(issued.certificate_pem).verify_directly_issued_by(fake.ca.cert)
    assert clock.now == pytest.approx(2.0)


def test_a_request_deleted_meanwhile_is_an_error() -> None:
    fake = FakeCertificateRequests(behaviour="silent")
    clock = Clock()

    def sleep_and_delete(seconds: float) -> None:
        clock.sleep(seconds)
        fake.items.clear()

    requester = cert_manager.CertificateRequester(
        fake, REF, sleep=sleep_and_delete, monotonic=clock.monotonic, suffix=lambda: "a"
    )
    with pytest.raises(cert_manager.RequestFailed, match="disappeared"):
        requester.sign("x", _csr(), usages=USAGES, duration=datetime.timedelta(hours=2))


def test_a_long_name_is_cut_to_fit_a_dns_subdomain() -> None:
    fake = FakeCertificateRequests()
    _requester(fake).sign(
        "host-" + "n" * 300, _csr(), usages=USAGES, duration=datetime.timedelta(hours=1)
    )
    assert len(fake.created[0]["metadata"]["name"]) <= 253


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (datetime.timedelta(hours=720), "720h"),
        (datetime.timedelta(days=90), "2160h"),
        (datetime.timedelta(minutes=90), "5400s"),
    ],
)
def test_durations_are_written_as_go_reads_them(duration: datetime.timedelta, text: str) -> None:
    assert cert_manager.go_duration(duration) == text


def test_an_issuer_ref_is_read_with_defaults_and_checked() -> None:
    ref = cert_manager.IssuerRef.from_dict({"name": "corp", "kind": "ClusterIssuer"}, "REF")
    assert ref == cert_manager.IssuerRef("corp", "ClusterIssuer", "cert-manager.io")
    assert cert_manager.IssuerRef.from_dict({"name": "a"}, "REF").kind == "Issuer"
    # An external issuer's kind in its own group is its business.
    external = {"name": "pca", "kind": "AWSPCAIssuer", "group": "awspca.cert-manager.io"}
    assert cert_manager.IssuerRef.from_dict(external, "REF").kind == "AWSPCAIssuer"
    with pytest.raises(ValueError, match=r"REF\.kind must be one of Issuer, ClusterIssuer"):
        cert_manager.IssuerRef.from_dict({"name": "a", "kind": "Signer"}, "REF")
    with pytest.raises(ValueError, match=r"REF\.name must be a non-empty string"):
        cert_manager.IssuerRef.from_dict({"kind": "Issuer"}, "REF")
    with pytest.raises(ValueError, match="REF has unknown fields: namespace"):
        cert_manager.IssuerRef.from_dict({"name": "a", "namespace": "b"}, "REF")
    with pytest.raises(ValueError, match="REF must be a JSON object"):
        cert_manager.IssuerRef.from_dict(["a"], "REF")
