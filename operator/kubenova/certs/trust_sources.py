"""The trust bundle when cert-manager issues: the union of the ``ca.crt`` of the Secrets it
writes.

cert-manager puts into each certificate's Secret the CA that signed it (``ca.crt``). While an
issuer's CA changes, the Secrets renewed already carry the new CA and the others the old one;
a peer that trusts both accepts every certificate still in use, so the bundle is every distinct
CA certificate of those Secrets: the overlap a rotation needs, made of what is deployed. The
order is stable (the Secrets' order, then each file's), so a pass that finds the same CAs writes
the same bytes and nothing changes downstream.

A Secret that is missing (not issued yet), has no ``ca.crt`` (an ACME issuer writes none) or
holds something unreadable adds nothing; :class:`Union` names it, for the log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubenova.k8s import objects

CA_KEY = "ca.crt"


@dataclasses.dataclass(frozen=True)
class Union:
    """The bundle (PEM, empty when no Secret gave a CA) and the Secrets that gave none, each
    with the reason."""

    pem: bytes
    missing: tuple[tuple[str, str], ...] = ()


def certificates_of(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file; ValueError when it holds none that can be read."""
    return list(x509.load_pem_x509_certificates(pem))


def union_pem(bundles: Iterable[bytes]) -> bytes:
    """The distinct certificates of ``bundles`` (PEM each) as one PEM bundle, in order of first
    appearance; unreadable bundles are skipped."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    for pem in bundles:
        try:
            found = certificates_of(pem)
        except ValueError:
            continue
        for cert in found:
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


def union_of_secrets(store: objects.Store, secrets: Sequence[str]) -> Union:
    """The union of the ``ca.crt`` of ``secrets`` (names in ``store``'s namespace)."""
    found: list[bytes] = []
    missing: list[tuple[str, str]] = []
    for name in secrets:
        stored = store.get("Secret", name)
        if stored is None:
            missing.append((name, "there is no such Secret yet"))
            continue
        pem = stored.data.get(CA_KEY, b"")
        if not pem.strip():
            missing.append((name, f"it has no {CA_KEY}"))
            continue
        try:
            certificates_of(pem)
        except ValueError as exc:
            missing.append((name, f"its {CA_KEY} cannot be read: {exc}"))
            continue
        found.append(pem)
    return Union(union_pem(found), tuple(missing))
