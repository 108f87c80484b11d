"""``POST /host-certificate``: the operator signs a host's console certificate for the node its
agent's token is bound to, with that Node's addresses, whatever the signing request asks for."""

from __future__ import annotations

import datetime
import ipaddress
import json
import pathlib
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubenova.agent_credentials import host_certificates
from kubenova.certs import authority, bundle, lifetime
from tests.unit.agent_credentials.endpoint import Endpoint, running_endpoint
from tests.unit.agent_credentials.fakes import FakeNodes


def signing_request(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    *,
    common_name: str = "node-a",
    alt_names: list[x509.GeneralName] | None = None,
) -> tuple[bytes, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key


@pytest.fixture
def ca() -> authority.KeyPair:
    return authority.issue_ca()


def signer(
    ca: authority.KeyPair, *, old: authority.KeyPair | None = None
) -> host_certificates.HostCertificates:
    retiring = () if old is None else (bundle.RetiringCA(old.cert, old.not_after),)
    return host_certificates.HostCertificates(
        lambda: bundle.TrustState(ca, retiring),
        FakeNodes({"node-a", "node-b"}),
        validity=datetime.timedelta(days=30),
    )


def sans(cert: x509.Certificate) -> list[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in names]


def test_the_certificate_names_the_node_and_its_addresses_for_the_requests_key(
    ca: authority.KeyPair,
) -> None:
    request, key = signing_request()
    signed = signer(ca).sign("node-b", request)
    cert = signed.certificate
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-b"
    assert sans(cert) == ["node-b", str(ipaddress.ip_address("10.0.0.2"))]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(ca.cert)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(
        days=30, minutes=5
    )


def test_names_and_addresses_in_the_request_are_ignored(ca: authority.KeyPair) -> None:
    request, _ = signing_request(
        common_name="node-b",
        alt_names=[x509.DNSName("node-b"), x509.IPAddress(ipaddress.ip_address("192.0.2.9"))],
    )
    cert = signer(ca).sign("node-a", request).certificate
    assert sans(cert) == ["node-a", "10.0.0.1"]


def test_the_answer_carries_the_whole_trust_bundle_and_the_renewal_date(
    ca: authority.KeyPair,
) -> None:
    old = authority.issue_ca(common_name="old-ca")
    request, _ = signing_request()
    answer = signer(ca, old=old).sign("node-a", request).answer()
    assert answer["caBundle"] == (ca.cert_pem() + old.cert_pem()).decode()
    cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert answer["renewAfter"] == lifetime.rfc3339(lifetime.renew_after(cert))
    assert answer["notAfter"] == lifetime.rfc3339(cert.not_valid_after_utc)


@pytest.mark.parametrize(
    ("request_pem", "reason"),
    [
        (b"not a request", "not a PEM certificate signing request"),
        (
            signing_request(rsa.generate_private_key(65537, 1024))[0],
            "at least 2048 bits, not 1024",
        ),
        (
            signing_request(ec.generate_private_key(ec.SECP521R1()))[0],
            "P-256 or P-384, not secp521r1",
        ),
    ],
    ids=["garbage", "small-rsa", "other-curve"],
)
def test_requests_that_cannot_be_signed_are_refused_with_the_reason(
    ca: authority.KeyPair, request_pem: bytes, reason: str
) -> None:
    with pytest.raises(host_certificates.BadRequest, match=reason):
        signer(ca).sign("node-a", request_pem)


def test_a_request_whose_signature_is_not_its_keys_is_refused(ca: authority.KeyPair) -> None:
    request, _ = signing_request()
    der = bytearray(x509.load_pem_x509_csr(request).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(host_certificates.BadRequest, match="signature is not its key's"):
        signer(ca).sign("node-a", forged)


# -- over HTTPS, behind the token review ------------------------------------------------------


@pytest.fixture
def endpoint(tmp_path: pathlib.Path) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path) as running:
        yield running


def post(endpoint: Endpoint, body: bytes, token: str | None) -> tuple[int, dict[str, str]]:
    url = endpoint.url.rsplit("/", 1)[0] + host_certificates.PATH
    request = urllib.request.Request(url, data=body, method="POST")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_the_agent_of_node_a_gets_node_as_certificate_whatever_it_asks(
    endpoint: Endpoint,
) -> None:
    request, key = signing_request(common_name="node-b")
    status, body = post(endpoint, request, "token-of-node-a")
    assert status == 200, body
    assert body["node"] == "node-a"
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert sans(cert) == ["node-a", "10.0.0.1"]
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(endpoint.ca.cert)
    assert body["caBundle"] == endpoint.ca.cert_pem().decode()


def test_another_identity_or_no_token_gets_no_certificate(endpoint: Endpoint) -> None:
    request, _ = signing_request()
    status, body = post(endpoint, request, "operator-token")
    assert status == 403
    assert "only system:serviceaccount:kubenova:kubenova-agent" in body["reason"]
    status, body = post(endpoint, request, None)
    assert status == 401
    assert "certificate" not in body


def test_a_bad_request_is_a_400_naming_the_problem(endpoint: Endpoint) -> None:
    status, body = post(endpoint, b"-----BEGIN NOTHING-----", "token-of-node-a")
    assert status == 400
    assert "not a PEM certificate signing request" in body["reason"]
    assert body["requestId"]


def test_a_body_past_the_limit_is_refused_unread(endpoint: Endpoint) -> None:
    # Only the headers are sent: the answer must come from the declared length alone (a
    # client still sending a large body could meet the closed connection before the answer).
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    with (
        socket.create_connection(("localhost", endpoint.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        request = (
            f"POST {host_certificates.PATH} HTTP/1.1\r\nHost: localhost\r\n"
            "Authorization: Bearer token-of-node-a\r\n"
            f"Content-Length: {64 * 1024 + 1}\r\n\r\n"
        )
        tls.sendall(request.encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"413", head
    assert "signing request is under" in json.loads(body)["reason"]
