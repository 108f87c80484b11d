"""``POST /host-certificate`` when cert-manager issues: the agent's signing request, once its
names are checked against the node the token is bound to, becomes a CertificateRequest that a
fake cert-manager signs with a real CA (or denies, or never answers); the answer is the
operator-as-CA path's. The exchange's own serving certificate comes from cert-manager too, and
no CA of the operator's is made."""

from __future__ import annotations

import datetime
import ipaddress
import json
import pathlib
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubenova.agent_credentials import (
    cert_manager_signer,
    exchange,
    host_certificates,
    minter,
    server,
    service,
)
from kubenova.agent_credentials.settings import ExchangeSettings
from kubenova.certs import authority, cert_manager, issuer_settings, store
from kubenova_agent import host_certificate
from tests.unit.agent_credentials.endpoint import write_token
from tests.unit.agent_credentials.fakes import (
    AGENT_USERNAME,
    FakeAdmin,
    FakeNodes,
    FakeObjects,
    FakeReviewer,
    agent_review,
)
from tests.unit.certs.fake_cert_manager import Clock, FakeCertificateRequests

REF = cert_manager.IssuerRef("kubenova-ca-issuer")
NODE_A_ADDRESS = "10.0.0.1"  # FakeNodes gives node-a this InternalIP
VALIDITY = datetime.timedelta(hours=720)


def _requester(
    fake: FakeCertificateRequests, timeout_s: float = 30.0
) -> cert_manager.CertificateRequester:
    clock = Clock()
    return cert_manager.CertificateRequester(
        fake, REF, timeout_s=timeout_s, sleep=clock.sleep, monotonic=clock.monotonic
    )


def _signer(
    fake: FakeCertificateRequests, trusted: bytes = b"", timeout_s: float = 30.0
) -> cert_manager_signer.CertManagerHostCertificates:
    return cert_manager_signer.CertManagerHostCertificates(
        _requester(fake, timeout_s),
        FakeNodes({"node-a", "node-b"}),
        lambda: trusted,
        validity=VALIDITY,
    )


def _request(common_name: str = "node-a", alt_names: list[x509.GeneralName] | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _request_with_organization() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "node-a"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        ]
    )
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _sans(cert: x509.Certificate) -> list[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in names]


def test_the_agents_request_is_signed_by_cert_manager_for_the_names_it_asks() -> None:
    fake = FakeCertificateRequests()
    _, request_pem = host_certificate.signing_request("node-a", [NODE_A_ADDRESS, "node-a.lan"])
    signed = _signer(fake).sign("node-a", request_pem)
    cert = signed.certificate
    cert.verify_directly_issued_by(fake.ca.cert)
    assert cert.subject.rfc4514_string() == "CN=node-a"
    assert _sans(cert) == ["node-a", NODE_A_ADDRESS]
    assert cert.public_key() == x509.load_pem_x509_csr(request_pem).public_key()
    (body,) = fake.created
    assert body["metadata"]["name"].startswith("host-node-a-")
    assert body["spec"]["usages"] == list(cert_manager_signer.HOST_USAGES)
    assert {"server auth", "client auth"} <= set(body["spec"]["usages"])
    assert body["spec"]["duration"] == "720h"
    assert body["spec"]["issuerRef"] == REF.as_dict()
    assert fake.deleted == [body["metadata"]["name"]]
    answer = signed.answer()
    assert answer["notAfter"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert answer["renewAfter"] < answer["notAfter"]


def test_the_trust_bundle_is_the_published_cas_and_cert_managers_once_each() -> None:
    fake = FakeCertificateRequests()
    old = authority.issue_ca("old")
    _, request_pem = host_certificate.signing_request("node-a", [NODE_A_ADDRESS])
    signed = _signer(fake, trusted=old.cert_pem() + fake.ca.cert_pem()).sign("node-a", request_pem)
    assert signed.trust_bundle_pem == old.cert_pem() + fake.ca.cert_pem()
    # Before any Secret holds a CA, the CA cert-manager answered with is trusted.
    fresh = _signer(fake).sign("node-a", request_pem)
    assert fresh.trust_bundle_pem == fake.ca.cert_pem()


@pytest.mark.parametrize(
    ("request_pem", "said"),
    [
        (_request("node-b"), "common name must be the node node-a, not node-b"),
        (
            _request(alt_names=[x509.DNSName("node-a"), x509.DNSName("api.example.com")]),
            "DNS names other than the node's (node-a) are not allowed: api.example.com",
        ),
        (
            _request(alt_names=[x509.IPAddress(ipaddress.ip_address("10.0.0.2"))]),
            "IP addresses that are not node node-a's are not allowed: 10.0.0.2",
        ),
        (
            _request_with_organization(),
            "the request's subject may hold the common name only, not O=system:masters",
        ),
        (
            _request(alt_names=[x509.UniformResourceIdentifier("spiffe://x/node-a")]),
            "only DNS names and IP addresses may be asked for",
        ),
    ],
)
def test_names_the_node_may_not_have_are_refused_before_cert_manager_is_asked(
    request_pem: bytes, said: str
) -> None:
    fake = FakeCertificateRequests()
    with pytest.raises(host_certificates.BadRequest) as caught:
        _signer(fake).sign("node-a", request_pem)
    assert said in str(caught.value)
    assert fake.created == []


def test_a_request_whose_signature_is_not_its_keys_is_refused() -> None:
    fake = FakeCertificateRequests()
    with pytest.raises(host_certificates.BadRequest, match="not a PEM certificate signing"):
        _signer(fake).sign("node-a", b"-----BEGIN CERTIFICATE REQUEST-----\n")
    assert fake.created == []


@pytest.mark.parametrize(
    ("behaviour", "said"), [("deny", "Denied: PolicyDenied"), ("silent", "within 1 s")]
)
def test_denied_or_unanswered_requests_fail_clearly(behaviour: str, said: str) -> None:
    fake = FakeCertificateRequests(behaviour=behaviour)
    _, request_pem = host_certificate.signing_request("node-a", [NODE_A_ADDRESS])
    with pytest.raises(cert_manager.RequestFailed, match=said):
        _signer(fake, timeout_s=1.0).sign("node-a", request_pem)
    assert fake.items == {}  # deleted


def _exchange(fake: FakeCertificateRequests) -> exchange.Exchange:
    return exchange.Exchange(
        FakeReviewer({"token-of-node-a": agent_review("node-a")}),
        FakeNodes({"node-a", "node-b"}),
        minter.Minter(FakeObjects(), FakeAdmin(), "amqp://rabbitmq:5672/kubenova"),
        audience="kubenova-operator",
        agent_username=AGENT_USERNAME,
        node_selector="kubenova.io/hypervisor=true",
        host_certificates=_signer(fake, timeout_s=1.0),
    )


def test_a_denial_reaches_the_agent_as_unavailable_with_cert_managers_reason() -> None:
    fake = FakeCertificateRequests(behaviour="deny")
    _, request_pem = host_certificate.signing_request("node-a", [NODE_A_ADDRESS])
    answer = _exchange(fake).handle_host_certificate("Bearer token-of-node-a", request_pem, "r1")
    assert answer.status == 503
    assert "PolicyDenied (hosts may not ask for this)" in answer.body["reason"]
    refused = _exchange(fake).handle_host_certificate(
        "Bearer token-of-node-a", _request("node-b"), "r2"
    )
    assert refused.status == 400
    assert "node-b" in refused.body["reason"]


@pytest.fixture
def cert_manager_exchange(
    tmp_path: pathlib.Path,
) -> Iterator[tuple[FakeCertificateRequests, str, str]]:
    """The real HTTPS endpoint, its certificate and the hosts' from the fake cert-manager;
    yields it with the endpoint's URL and a CA file holding cert-manager's CA."""
    fake = FakeCertificateRequests()
    certificate = server.ServingCertificate(
        cert_manager_signer.serving_pair_issuer(_requester(fake)), ["localhost"]
    )
    running = server.serve(_exchange(fake), certificate, "127.0.0.1", 0)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(fake.ca.cert_pem())
    try:
        yield fake, f"https://localhost:{running.port}{host_certificate.PATH}", str(ca_file)
    finally:
        running.stop()


def test_the_agent_gets_its_certificate_through_cert_manager(
    cert_manager_exchange: tuple[FakeCertificateRequests, str, str], tmp_path: pathlib.Path
) -> None:
    fake, url, ca_file = cert_manager_exchange
    agent = host_certificate.HostCertificate(
        tmp_path / "pki" / "console",
        url,
        node="node-a",
        addresses=[NODE_A_ADDRESS],
        ca_file=ca_file,
        token_file=write_token(tmp_path, "token-of-node-a"),
    )
    issued = agent.obtain(deadline_s=5)
    assert issued.node == "node-a"
    cert = x509.load_pem_x509_certificate((agent.directory / "server-cert.pem").read_bytes())
    cert.verify_directly_issued_by(fake.ca.cert)
    assert _sans(cert) == ["node-a", NODE_A_ADDRESS]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert (agent.directory / "ca-cert.pem").read_bytes() == fake.ca.cert_pem()
    # One request for the serving certificate, one for the host's; none left behind.
    assert [body["metadata"]["name"].split("-")[0] for body in fake.created] == [
        "operator",
        "host",
    ]
    assert fake.items == {}


def test_the_serving_certificate_outlives_a_failed_renewal_but_not_its_expiry() -> None:
    fake = FakeCertificateRequests()
    now = [datetime.datetime.now(datetime.UTC)]
    certificate = server.ServingCertificate(
        cert_manager_signer.serving_pair_issuer(_requester(fake, timeout_s=1.0)),
        ["localhost"],
        lambda: now[0],
    )
    first = certificate.context()
    fake.behaviour = "silent"
    now[0] += datetime.timedelta(days=61)  # due (two thirds of 90 days), not expired
    assert certificate.context() is first
    assert len(fake.created) == 2
    # Tried again only after a while, not at each connection.
    assert certificate.context() is first
    assert len(fake.created) == 2
    now[0] += datetime.timedelta(days=30)  # expired
    with pytest.raises(cert_manager.RequestFailed):
        certificate.context()


def test_in_cert_manager_mode_the_service_makes_no_ca(tmp_path: pathlib.Path) -> None:
    fake = FakeCertificateRequests()
    objs = FakeObjects()
    issuing = issuer_settings.IssuerSettings.from_env(
        {
            "KUBENOVA_CERTIFICATES_ISSUER": "cert-manager",
            "KUBENOVA_CERTIFICATES_ISSUER_REF": json.dumps(REF.as_dict()),
            "KUBENOVA_CERTIFICATES_TRUST_SECRETS": "kubenova-console-x509",
        }
    )
    credentials = service.AgentCredentials(
        ExchangeSettings(addr="127.0.0.1", namespace="kubenova", agent_namespace="kubenova"),
        store=objs,
        admin=FakeAdmin(),
        reviewer=FakeReviewer({"token-of-node-a": agent_review("node-a")}),
        nodes=FakeNodes(),
        node_addresses=FakeNodes(),
        watched_nodes=FakeNodes(),
        issuing=issuing,
        certificate_requests=fake,
    )
    credentials.listen()
    try:
        assert credentials.problem() is None
        assert ("Secret", store.CA_NAME) not in objs.items
        (serving,) = fake.created
        assert serving["spec"]["usages"] == list(cert_manager_signer.SERVING_USAGES)
        _, request_pem = host_certificate.signing_request("node-a", [NODE_A_ADDRESS])
        answer = credentials.exchange.handle_host_certificate(
            "Bearer token-of-node-a", request_pem, "r1"
        )
        assert answer.status == 200, answer.body
        x509.load_pem_x509_certificate(
            answer.body["certificate"].encode()
        ).verify_directly_issued_by(fake.ca.cert)
        assert ("Secret", store.CA_NAME) not in objs.items
    finally:
        credentials.stop()
    with pytest.raises(ValueError, match="no issuer or CertificateRequests"):
        service.AgentCredentials(
            ExchangeSettings(),
            store=objs,
            admin=FakeAdmin(),
            reviewer=FakeReviewer(),
            nodes=FakeNodes(),
            node_addresses=FakeNodes(),
            watched_nodes=FakeNodes(),
            issuing=issuing,
        )
