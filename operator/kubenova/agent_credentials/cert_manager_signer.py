"""The exchange's certificates when cert-manager issues: the hosts' console certificates and
the exchange's own serving certificate, each signed through a CertificateRequest
(:mod:`kubenova.certs.cert_manager`).

A host's signing request is checked as on the operator-as-CA path (a readable request, signed
by its key, an allowed key type: :func:`host_certificates.public_key_of`), then its names
(:mod:`requested_names`), because cert-manager signs the names the request carries. The answer
is the operator-as-CA path's: the certificate, the trust bundle (the union of the CAs in
cert-manager's Secrets and the CA cert-manager answered with, so the host trusts the console
proxy's client certificate and its own chain), ``notAfter`` and ``renewAfter``.

The exchange's serving certificate is asked for with a key made here, in memory, for the
operator Service's names; the agents check it against the ConfigMap ``kubenova-ca``, which then
holds cert-manager's CA.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubenova.agent_credentials import host_certificates, requested_names
from kubenova.certs import authority, cert_manager, trust_sources
from kubenova.k8s import objects

# QEMU's GnuTLS wants key encipherment beside digital signature on a leaf whose key usage is
# critical (cert-manager makes it so); the host's certificate serves VNC, SPICE and the serial
# console, and libvirt checks it as a client during a migration.
HOST_USAGES = ("digital signature", "key encipherment", "server auth", "client auth")
SERVING_USAGES = ("digital signature", "key encipherment", "server auth")


class CertManagerHostCertificates:
    """Signs hosts' console certificates through cert-manager (see the module's doc)."""

    def __init__(
        self,
        requester: cert_manager.CertificateRequester,
        nodes: host_certificates.NodeAddresses,
        trust_bundle: Callable[[], bytes],
        *,
        validity: datetime.timedelta = authority.CONSOLE_VALIDITY,
    ) -> None:
        self._requester = requester
        self._nodes = nodes
        self._trust_bundle = trust_bundle
        self._validity = validity

    def sign(self, node: str, request_pem: bytes) -> host_certificates.Signed:
        """Node ``node``'s certificate for ``request_pem``. :class:`host_certificates.BadRequest`
        for a request that cannot be signed (a name not allowed among them);
        :class:`cert_manager.RequestFailed` when cert-manager refuses or does not answer."""
        host_certificates.public_key_of(request_pem)
        request = x509.load_pem_x509_csr(request_pem)
        try:
            requested_names.check(request, node, self._nodes.addresses(node))
        except requested_names.NameNotAllowed as exc:
            raise host_certificates.BadRequest(str(exc)) from exc
        issued = self._requester.sign(
            f"host-{node}", request_pem, usages=HOST_USAGES, duration=self._validity
        )
        certificate = _leaf(issued)
        bundle = trust_sources.union_pem([self._trust_bundle(), issued.ca_pem])
        return host_certificates.Signed(certificate, bundle)


def _leaf(issued: cert_manager.Issued) -> x509.Certificate:
    """The first certificate of cert-manager's answer (the leaf; a chain may follow)."""
    try:
        return trust_sources.certificates_of(issued.certificate_pem)[0]
    except ValueError as exc:
        raise cert_manager.RequestFailed(f"cert-manager answered no certificate: {exc}") from exc


def trust_bundle_of_secrets(store_: objects.Store, secrets: Sequence[str]) -> Callable[[], bytes]:
    """The union of the ``ca.crt`` of ``secrets``, read again at each call."""
    return lambda: trust_sources.union_of_secrets(store_, secrets).pem


IssuePair = Callable[[Sequence[str], datetime.datetime], authority.KeyPair]


def serving_pair_issuer(
    requester: cert_manager.CertificateRequester,
    *,
    validity: datetime.timedelta = authority.SERVER_VALIDITY,
) -> IssuePair:
    """A function that gets a serving certificate for its DNS names (the first is the common
    name) from cert-manager, with a new key, as :class:`server.ServingCertificate` issues."""

    def issue(dns_names: Sequence[str], now: datetime.datetime) -> authority.KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        issued = requester.sign(
            "operator-serving",
            csr.public_bytes(serialization.Encoding.PEM),
            usages=SERVING_USAGES,
            duration=validity,
        )
        return authority.KeyPair(_leaf(issued), key)

    return issue
