"""cert-manager on the local cluster, as Kubenova's cert-manager mode uses it
(docs/certificates.md): its controller (hack/certmanager/up.sh, the pinned release run as a host
process against the real kube-apiserver) issues a CA from a selfSigned Issuer, a leaf
certificate from a CA Issuer made of it, and signs a CertificateRequest made from a CSR, the way
the operator has a hypervisor host's certificate signed."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.conftest import KUBECONFIG, ROOT, STATE, apply, get, kubectl, wait_for
from tests.support.required import missing

pytestmark = pytest.mark.e2e

CERT_MANAGER = ROOT / "hack" / "certmanager"
PIDFILE = STATE / "run" / "cert-manager-controller.pid"
CA_ISSUER = "ca-issuer"
CA_SECRET = "ca"


def _tools_bin() -> pathlib.Path:
    """Where hack/certmanager/build.sh keeps the controller (hack/lib/env.sh's default)."""
    cache = pathlib.Path(os.environ.get("KUBENOVA_CACHE", "/var/cache/kubenova"))
    return pathlib.Path(os.environ.get("KUBENOVA_TOOLS_BIN", cache / "bin"))


def _controller_built() -> bool:
    return any(_tools_bin().glob("cert-manager-controller-v*"))


def _controller_running() -> bool:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return False
    return pathlib.Path(f"/proc/{pid}").exists()


def _script(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CERT_MANAGER / name)], capture_output=True, text=True, timeout=540, check=False
    )


@pytest.fixture(scope="module")
def cert_manager() -> Iterator[None]:
    """cert-manager's controller, issuing; stopped afterwards when this module started it."""
    if not KUBECONFIG.exists() or kubectl("get", "--raw", "/readyz", check=False).returncode:
        pytest.fail("the local stack is not up: run the tests with `make test`")
    if not _controller_built() and shutil.which("go") is None:
        missing("cert-manager's controller is not built and there is no Go to build it with")
    was_running = _controller_running()
    started = _script("up.sh")
    assert started.returncode == 0, f"hack/certmanager/up.sh: {started.stdout}{started.stderr}"
    yield
    if not was_running:
        stopped = _script("down.sh")
        assert stopped.returncode == 0, f"hack/certmanager/down.sh: {stopped.stderr}"


@pytest.fixture(scope="module")
def namespace(cert_manager: None) -> Iterator[str]:
    name = f"e2e-cm-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _ready(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    obj = get(kind, name, namespace)
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return obj
    return None


def _wait_ready(kind: str, name: str, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        f"{kind} {namespace}/{name} to be Ready",
        lambda: _ready(kind, name, namespace),
        timeout=60,
    )
    return found


def _secret_data(name: str, namespace: str) -> dict[str, bytes]:
    secret = get("secret", name, namespace)
    assert secret is not None, f"no Secret {namespace}/{name}"
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """The CA's key signed ``cert`` (raises InvalidSignature otherwise)."""
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_key.verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )
    return cert.issuer == ca.subject


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _lasts(cert: x509.Certificate, expected: datetime.timedelta) -> bool:
    """Valid for ``expected``, give or take the second between cert-manager's two clock reads
    (its notBefore and notAfter are each taken from the clock, then cut to whole seconds)."""
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return abs(lifetime - expected) <= datetime.timedelta(seconds=1)


@pytest.fixture(scope="module")
def ca(namespace: str) -> x509.Certificate:
    """A CA Certificate from a selfSigned Issuer, and a CA Issuer that signs with it, as the
    chart renders them when no issuer is named; returns the CA's certificate."""
    apply(
        [
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Issuer",
                "metadata": {"name": "selfsigned", "namespace": namespace},
                "spec": {"selfSigned": {}},
            },
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {"name": "ca", "namespace": namespace},
                "spec": {
                    "isCA": True,
                    "commonName": f"{namespace} test CA",
                    "secretName": CA_SECRET,
                    "duration": "87600h",
                    "privateKey": {"algorithm": "ECDSA", "size": 256},
                    "issuerRef": {"name": "selfsigned", "kind": "Issuer"},
                },
            },
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Issuer",
                "metadata": {"name": CA_ISSUER, "namespace": namespace},
                "spec": {"ca": {"secretName": CA_SECRET}},
            },
        ]
    )
    _wait_ready("certificate", "ca", namespace)
    _wait_ready("issuer", CA_ISSUER, namespace)
    cert = x509.load_pem_x509_certificate(_secret_data(CA_SECRET, namespace)["tls.crt"])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _issued_by(cert, cert), "the CA is not self-signed"
    return cert


def test_a_ca_issuer_issues_a_leaf_certificate_into_a_secret(
    namespace: str, ca: x509.Certificate
) -> None:
    names = [f"leaf.{namespace}.svc", f"leaf.{namespace}.svc.cluster.local"]
    apply(
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "leaf", "namespace": namespace},
            "spec": {
                "secretName": "leaf-tls",
                "dnsNames": names,
                "usages": ["server auth"],
                "duration": "24h",
                "renewBefore": "8h",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"name": CA_ISSUER, "kind": "Issuer", "group": "cert-manager.io"},
            },
        }
    )
    _wait_ready("certificate", "leaf", namespace)

    data = _secret_data("leaf-tls", namespace)
    assert {"tls.crt", "tls.key", "ca.crt"} <= data.keys()
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == ca
    assert _issued_by(leaf, ca), f"leaf issued by {leaf.issuer}, not by {ca.subject}"
    key = serialization.load_pem_private_key(data["tls.key"], password=None)
    assert _public_der(key.public_key()) == _public_der(leaf.public_key()), (
        "tls.key is not tls.crt's key"
    )
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == names
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _lasts(leaf, datetime.timedelta(hours=24))


def test_a_certificate_request_from_a_csr_is_approved_and_signed(
    namespace: str, ca: x509.Certificate
) -> None:
    """What the operator does with a hypervisor host's CSR in cert-manager mode."""
    node = f"e2e-node-{uuid.uuid4().hex[:6]}"
    address = ipaddress.ip_address("192.0.2.10")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(node), x509.IPAddress(address)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    apply(
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "CertificateRequest",
            "metadata": {"name": node, "namespace": namespace},
            "spec": {
                "request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                "issuerRef": {"name": CA_ISSUER, "kind": "Issuer", "group": "cert-manager.io"},
                "usages": ["server auth", "client auth"],
                "duration": "1h",
            },
        }
    )
    request = _wait_ready("certificaterequest", node, namespace)

    conditions = {c["type"]: c for c in request["status"]["conditions"]}
    assert conditions["Approved"]["status"] == "True", conditions
    assert "Denied" not in conditions, conditions
    signed = x509.load_pem_x509_certificate(base64.b64decode(request["status"]["certificate"]))
    assert x509.load_pem_x509_certificate(base64.b64decode(request["status"]["ca"])) == ca
    assert _issued_by(signed, ca), f"signed by {signed.issuer}, not by {ca.subject}"
    assert _public_der(signed.public_key()) == _public_der(key.public_key())
    assert signed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node
    names = signed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [node]
    assert names.get_values_for_type(x509.IPAddress) == [address]
    assert set(signed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    assert _lasts(signed, datetime.timedelta(hours=1))
    kubectl("delete", "certificaterequest", node, "-n", namespace)
    assert get("certificaterequest", node, namespace) is None
