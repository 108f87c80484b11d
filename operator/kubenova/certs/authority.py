"""Make a certificate authority and sign leaf certificates (serving and client) with it.

Keys are ECDSA P-256: a new key costs a millisecond where RSA-2048 costs a noticeable share of
a small core, and every TLS client Kubenova has (Python's ``ssl``, Go, browsers) takes them.
A CA brought in from elsewhere (an RSA one, say) signs just as well: :meth:`KeyPair.from_pem`
accepts either kind.

Lifetimes. Kubenova publishes no revocation list, so a certificate's lifetime is the only bound
on what a stolen key is worth; each holder issues its certificate again at two thirds of its
life (``kubenova.certs.lifetime``), which leaves a third of it to notice a renewal that fails.

* The CA lives ten years (``CA_VALIDITY``), as kubeadm's does: its key never leaves the
  operator's Secret, and every CA rotation asks every client to take up a new trust bundle,
  so rarer is cheaper. It rotates after two thirds (``kubenova.certs.bundle``).
* The operator's own serving certificate lives 90 days (``SERVER_VALIDITY``); its process
  issues a new one in memory after 60.
* Console certificates (``kubenova.certs.console``) live 30 days (``CONSOLE_VALIDITY``): they
  sit in files on hypervisor hosts, where a key is likelier to be copied, and are renewed after
  20 days, which leaves ten days (a long weekend and an outage) to notice a renewal that fails.
* No leaf lives longer than ``MAX_LEAF_VALIDITY``: a CA that was replaced stays trusted for
  that long (plus a grace period), which is how long a leaf it signed can still be in use.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=90)
CONSOLE_VALIDITY = datetime.timedelta(days=30)
MAX_LEAF_VALIDITY = datetime.timedelta(days=90)
# Backdated so that a peer whose clock is a little behind still accepts a new certificate.
_CLOCK_SKEW = datetime.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# The keys a signing request may hold (the same kinds as ours).
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def not_after(self) -> datetime.datetime:
        return self.cert.not_valid_after_utc

    @property
    def not_before(self) -> datetime.datetime:
        return self.cert.not_valid_before_utc

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        """Load a pair; ValueError when either part is unreadable or they do not match."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"unsupported key type {type(key).__name__}")
        if cert.public_key() != key.public_key():
            raise ValueError("the certificate is not the key's")
        return cls(cert, key)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_usage(*, cert_sign: bool, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def issue_ca(
    common_name: str = "kubenova-ca",
    *,
    validity: datetime.timedelta = CA_VALIDITY,
    now: datetime.datetime | None = None,
) -> KeyPair:
    """A new self-signed CA that may sign leaf certificates only (path length 0)."""
    now = now or _now()
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def issue_server_cert(
    ca: KeyPair,
    dns_names: Sequence[str],
    *,
    validity: datetime.timedelta = SERVER_VALIDITY,
    now: datetime.datetime | None = None,
) -> KeyPair:
    """A serving certificate for ``dns_names`` (the first is also its common name), signed by
    ``ca``, with a new key. It never outlives the CA that vouches for it."""
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    return issue_leaf(
        ca,
        dns_names[0],
        [x509.DNSName(name) for name in dns_names],
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        validity=validity,
        now=now,
    )


def issue_leaf(
    ca: KeyPair,
    common_name: str,
    alt_names: Sequence[x509.GeneralName],
    *,
    purpose: x509.ObjectIdentifier,
    validity: datetime.timedelta,
    now: datetime.datetime | None = None,
    key_encipherment: bool = False,
) -> KeyPair:
    """A certificate for one ``purpose`` (serverAuth or clientAuth, never both: a console
    proxy's client key must not be able to pose as a host), signed by ``ca``, with a new key.

    ``validity`` may not exceed ``MAX_LEAF_VALIDITY``, which a CA rotation counts on; the
    certificate never outlives ``ca``. ``key_encipherment`` sets that key usage bit, which
    libvirt and QEMU demand of a leaf whose key usage is critical, whatever its key type.
    """
    key = _new_key()
    cert = sign_leaf(
        ca,
        key.public_key(),
        common_name,
        alt_names,
        purpose=purpose,
        validity=validity,
        now=now,
        key_encipherment=key_encipherment,
    )
    return KeyPair(cert, key)


def sign_leaf(
    ca: KeyPair,
    public_key: PublicKey,
    common_name: str,
    alt_names: Sequence[x509.GeneralName],
    *,
    purpose: x509.ObjectIdentifier,
    validity: datetime.timedelta,
    now: datetime.datetime | None = None,
    key_encipherment: bool = False,
) -> x509.Certificate:
    """As :func:`issue_leaf`, for a key that someone else holds (a signing request's): only
    the certificate is made, and the private key never reaches the CA."""
    if validity > MAX_LEAF_VALIDITY:
        raise ValueError(f"a leaf may live {MAX_LEAF_VALIDITY} at most, not {validity}")
    now = now or _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca.not_after))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(cert_sign=False, key_encipherment=key_encipherment), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
        critical=False,
    ).sign(ca.key, hashes.SHA256())


def is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca
