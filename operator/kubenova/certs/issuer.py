"""Issue the certificates of Kubenova's servers into Secrets, and issue them again when due.

Each :class:`CertificateSpec` names a Secret in the operator's namespace and what it holds:

* ``serving``: a serving certificate for ``dns_names`` (``kubenova-console`` towards browsers,
  ``kubenova-subresources`` towards the kube-apiserver), as a ``kubernetes.io/tls`` Secret:
  ``tls.crt``, ``tls.key`` and ``ca.crt`` (the trust bundle);
* ``console-client``: the console proxy's client certificate towards QEMU, with the files
  :func:`kubenova.certs.console.proxy_files` names (``ca-cert.pem``, ``client-cert.pem``,
  ``client-key.pem``), so the Secret mounts as the proxy's x509 directory.

:func:`why_issue` is the decision, a pure function of what the Secret holds, the CA and the
time: a certificate is issued again when there is none, it cannot be read, the current CA did
not sign it, its names changed, or two thirds of its life have passed
(:func:`kubenova.certs.lifetime.renewal_due`). :func:`ensure` acts on it. Every Secret carries
``kubenova.io/not-after`` and ``kubenova.io/renew-after`` (RFC 3339, UTC), so an administrator
sees each expiry with ``kubectl get secret -l kubenova.io/certificate -o custom-columns=...``
(docs/certificates.md).

Two writers converge as :mod:`kubenova.certs.store` makes them: a create over an existing name
or a replace over a stale resourceVersion is refused, and the refused writer judges again what
is there now, which is then a fresh certificate it keeps.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtensionOID

from kubenova.certs import authority, bundle, console, lifetime
from kubenova.k8s import objects

LOG = logging.getLogger(__name__)

# The label that marks the Secrets this module keeps; its value is the purpose.
CERTIFICATE_LABEL = "kubenova.io/certificate"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubenova-operator"}
TLS_CERT, TLS_KEY, TLS_CA = "tls.crt", "tls.key", "ca.crt"
_ATTEMPTS = 3


class Purpose(enum.StrEnum):
    SERVING = "serving"
    CONSOLE_CLIENT = "console-client"


@dataclasses.dataclass(frozen=True)
class CertificateSpec:
    """One certificate the operator keeps in the Secret ``secret``."""

    secret: str
    purpose: Purpose
    dns_names: tuple[str, ...] = ()
    validity: datetime.timedelta = authority.CONSOLE_VALIDITY

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("a certificate needs the name of its Secret")
        if self.purpose is Purpose.SERVING and not self.dns_names:
            raise ValueError(f"the serving certificate in Secret {self.secret} needs DNS names")
        if not datetime.timedelta(hours=1) <= self.validity <= authority.MAX_LEAF_VALIDITY:
            raise ValueError(
                f"Secret {self.secret}: a lifetime between 1 hour and"
                f" {authority.MAX_LEAF_VALIDITY.days} days, not {self.validity}"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CertificateSpec:
        """``{"secret": NAME, "purpose": "serving", "dnsNames": [...], "validityHours": N}``
        (the chart's rendering); ValueError naming what is wrong."""
        try:
            purpose = Purpose(raw.get("purpose", ""))
        except ValueError:
            choices = ", ".join(p.value for p in Purpose)
            raise ValueError(f"a certificate's purpose is one of {choices}: {raw!r}") from None
        hours = raw.get("validityHours", authority.CONSOLE_VALIDITY.total_seconds() / 3600)
        if not isinstance(hours, int | float) or isinstance(hours, bool):
            raise ValueError(f"validityHours must be a number: {raw!r}")
        names = raw.get("dnsNames", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"dnsNames must be a list of names: {raw!r}")
        return cls(
            secret=str(raw.get("secret", "")),
            purpose=purpose,
            dns_names=tuple(names),
            validity=datetime.timedelta(hours=hours),
        )

    @property
    def cert_key(self) -> str:
        """The Secret's key that holds the certificate."""
        return TLS_CERT if self.purpose is Purpose.SERVING else console.CLIENT_CERT_FILE


def why_issue(
    stored: objects.StoredObject | None,
    spec: CertificateSpec,
    ca: authority.KeyPair,
    now: datetime.datetime,
) -> str | None:
    """Why the certificate in ``stored`` must be issued again at ``now``, or None when it
    may stay (the trust bundle and annotations beside it may still need refreshing)."""
    if stored is None:
        return "there is none"
    try:
        cert = x509.load_pem_x509_certificate(stored.data[spec.cert_key])
    except KeyError:
        return f"it has no {spec.cert_key}"
    except ValueError as exc:
        return f"it cannot be read: {exc}"
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the current CA did not sign it"
    if spec.purpose is Purpose.SERVING and _dns_names(cert) != set(spec.dns_names):
        return f"its names are not {', '.join(spec.dns_names)}"
    if lifetime.renewal_due(cert, now):
        return f"it is due for renewal since {lifetime.rfc3339(lifetime.renew_after(cert))}"
    return None


def _dns_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return set()
    value: x509.SubjectAlternativeName = san.value  # type: ignore[assignment]
    return set(value.get_values_for_type(x509.DNSName))


def issue(
    spec: CertificateSpec, ca: authority.KeyPair, now: datetime.datetime
) -> authority.KeyPair:
    """A new certificate as ``spec`` describes it, signed by ``ca``."""
    if spec.purpose is Purpose.SERVING:
        return authority.issue_server_cert(ca, spec.dns_names, validity=spec.validity, now=now)
    return console.issue_proxy_client_cert(ca, validity=spec.validity, now=now)


def secret_data(
    spec: CertificateSpec, pair: authority.KeyPair, trust_bundle: bytes
) -> dict[str, bytes]:
    if spec.purpose is Purpose.SERVING:
        return {TLS_CERT: pair.cert_pem(), TLS_KEY: pair.key_pem(), TLS_CA: trust_bundle}
    return console.proxy_files(pair, trust_bundle)


def _bundle_key(spec: CertificateSpec) -> str:
    return TLS_CA if spec.purpose is Purpose.SERVING else console.CA_FILE


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`ensure` did to one Secret: ``issued`` (with the reason), ``refreshed`` (the
    bundle or annotations only) or ``kept``; ``not_after`` is the certificate's expiry."""

    secret: str
    action: str
    not_after: datetime.datetime
    reason: str = ""


def ensure(
    store: objects.Store,
    spec: CertificateSpec,
    trust: bundle.TrustState,
    now: datetime.datetime,
) -> Outcome:
    """Make the Secret of ``spec`` hold a certificate that may stay, signed by
    ``trust.current``, beside ``trust``'s bundle and the expiry annotations."""
    for _ in range(_ATTEMPTS):
        stored = store.get("Secret", spec.secret)
        reason = why_issue(stored, spec, trust.current, now)
        if stored is not None and reason is not None and stored.type != _type(spec):
            # Another issuer's Secret (cert-manager writes kubernetes.io/tls for every
            # certificate, the console client's too): a Secret's type cannot change, and its
            # type may demand keys this one does not have, so it is made anew.
            store.delete("Secret", spec.secret)
            continue
        if reason is not None or stored is None:
            pair = issue(spec, trust.current, now)
            data, cert = secret_data(spec, pair, trust.bundle_pem()), pair.cert
        else:
            data = dict(stored.data)
            data[_bundle_key(spec)] = trust.bundle_pem()
            cert = x509.load_pem_x509_certificate(data[spec.cert_key])
        wanted = _secret(spec, data, cert, stored)
        if stored is not None and _same(wanted, stored):
            return Outcome(spec.secret, "kept", cert.not_valid_after_utc)
        try:
            if stored is None:
                store.create("Secret", wanted)
            else:
                store.replace("Secret", wanted)
        except (objects.AlreadyExists, objects.Conflict):
            continue  # another writer came first: judge what it wrote
        action = "issued" if reason is not None else "refreshed"
        return Outcome(spec.secret, action, cert.not_valid_after_utc, reason or "")
    raise RuntimeError(f"the Secret {store.namespace}/{spec.secret} keeps changing under us")


def _secret(
    spec: CertificateSpec,
    data: Mapping[str, bytes],
    cert: x509.Certificate,
    stored: objects.StoredObject | None,
) -> objects.StoredObject:
    """The Secret as this module writes it; labels and annotations of others are kept."""
    labels = {**(stored.labels if stored else {}), **MANAGED_BY, CERTIFICATE_LABEL: spec.purpose}
    annotations = {**(stored.annotations if stored else {}), **lifetime.expiry_annotations(cert)}
    return objects.StoredObject(
        name=spec.secret,
        data=dict(data),
        labels=labels,
        annotations=annotations,
        # A Secret's type cannot change: a replacement keeps the one stored.
        type=stored.type if stored is not None else _type(spec),
        resource_version=stored.resource_version if stored is not None else None,
    )


def _type(spec: CertificateSpec) -> str:
    return "kubernetes.io/tls" if spec.purpose is Purpose.SERVING else "Opaque"


def _same(wanted: objects.StoredObject, stored: objects.StoredObject) -> bool:
    return (
        dict(wanted.data) == dict(stored.data)
        and dict(wanted.annotations) == dict(stored.annotations)
        and dict(wanted.labels) == dict(stored.labels)
    )


def ensure_all(
    store: objects.Store,
    specs: Sequence[CertificateSpec],
    trust: bundle.TrustState,
    now: datetime.datetime,
) -> list[Outcome]:
    """:func:`ensure` each of ``specs``, logging what was issued and why."""
    outcomes = []
    for spec in specs:
        outcome = ensure(store, spec, trust, now)
        if outcome.action == "issued":
            LOG.info(
                "issued the certificate in Secret %s/%s (%s); it expires at %s",
                store.namespace,
                spec.secret,
                outcome.reason,
                lifetime.rfc3339(outcome.not_after),
            )
        elif outcome.action == "refreshed":
            LOG.info("refreshed the trust bundle of Secret %s/%s", store.namespace, spec.secret)
        outcomes.append(outcome)
    return outcomes
