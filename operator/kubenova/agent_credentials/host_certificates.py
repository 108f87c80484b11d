"""A hypervisor host's certificate for its QEMU consoles' TLS, signed for its agent.

``POST /host-certificate`` carries a PEM certificate signing request made by the agent, whose
key never leaves its node. What the certificate says is decided here, not by the request: its
name is the node the caller's token is bound to (``exchange``), and its IP SANs are that Node's
addresses as the apiserver reports them, so an agent can neither pose as another host nor
claim an address its node does not have. Of the request only the public key is used, once its
signature proves the caller holds the private key.

The answer carries the certificate and the trust bundle (the current CA and those retiring:
QEMU checks the console proxy's client certificate against it) with the dates the agent renews
by: ``renewAfter`` is two thirds into the certificate's life, as for every certificate the
operator keeps (``kubenova.certs.lifetime``).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubenova.certs import authority, bundle, console, lifetime

PATH = "/host-certificate"
# The smallest keys QEMU's GnuTLS and the console proxy's OpenSSL should still be offered.
_MIN_RSA_BITS = 2048
_CURVES = (ec.SECP256R1, ec.SECP384R1)


class NodeAddresses(Protocol):
    def addresses(self, name: str) -> Sequence[str]: ...


class HostSigner(Protocol):
    """What answers ``POST /host-certificate``: :class:`HostCertificates` (the operator as CA)
    or :class:`~kubenova.agent_credentials.cert_manager_signer.CertManagerHostCertificates`."""

    def sign(self, node: str, request_pem: bytes) -> Signed: ...


class BadRequest(ValueError):
    """The signing request cannot be signed; the message says why, for the caller."""


@dataclasses.dataclass(frozen=True)
class Signed:
    certificate: x509.Certificate
    trust_bundle_pem: bytes

    def answer(self) -> dict[str, str]:
        not_after = self.certificate.not_valid_after_utc
        return {
            "certificate": self.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "caBundle": self.trust_bundle_pem.decode(),
            "notAfter": lifetime.rfc3339(not_after),
            "renewAfter": lifetime.rfc3339(lifetime.renew_after(self.certificate)),
        }


def public_key_of(request_pem: bytes) -> authority.PublicKey:
    """The key of a PEM signing request whose signature is good; :class:`BadRequest` else."""
    try:
        request = x509.load_pem_x509_csr(request_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadRequest(f"the body is not a PEM certificate signing request: {exc}") from exc
    try:
        key = request.public_key()
        signed = request.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadRequest(f"the request's key cannot be read: {exc}") from exc
    if not signed:
        raise BadRequest("the request's signature is not its key's")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise BadRequest(f"an RSA key needs at least {_MIN_RSA_BITS} bits, not {key.key_size}")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise BadRequest(f"EC keys must be on P-256 or P-384, not {key.curve.name}")
        return key
    raise BadRequest(f"keys of type {type(key).__name__} are not signed: use EC P-256 or RSA")


class HostCertificates:
    """Signs hosts' console certificates with the CA that signs now."""

    def __init__(
        self,
        trust: Callable[[], bundle.TrustState],
        nodes: NodeAddresses,
        *,
        validity: datetime.timedelta = authority.CONSOLE_VALIDITY,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._trust = trust
        self._nodes = nodes
        self._validity = validity
        self._now = now

    def sign(self, node: str, request_pem: bytes) -> Signed:
        """Node ``node``'s certificate for the key of ``request_pem``. Raises
        :class:`BadRequest` for a request that cannot be signed, anything else when the
        apiserver cannot be asked now."""
        public_key = public_key_of(request_pem)
        addresses = list(self._nodes.addresses(node))
        state = self._trust()
        certificate = console.sign_host_cert(
            state.current,
            node,
            addresses,
            public_key,
            validity=self._validity,
            now=self._now(),
        )
        return Signed(certificate, state.bundle_pem())
