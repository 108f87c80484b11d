"""CA rotation with an overlap on both sides, modelled as a trust bundle.

Trust comes before signing: a rotation first *announces* the next CA, which every peer then
trusts (it is in the bundle) while it signs nothing yet; only once ``PROPAGATION`` has passed,
time for the bundle to reach every peer (the kubelet's projection of the ConfigMap, an agent's
next check, QEMU's reload), does it become the CA that signs. Otherwise a peer that still had
the old bundle (a host's QEMU checking the console proxy's client certificate) would refuse the
first certificates the new CA signed.

Replacing a CA in one step would break every certificate it signed at once: a peer that trusts
only the new CA refuses a leaf the old one signed until that leaf is issued again. So a
rotation keeps the old CA's certificate trusted beside the new one until the last leaf the old
CA signed has expired. Leaves are always signed by the newest CA, so none is signed by the old
one after the rotation, and the last of its leaves expires at most ``MAX_LEAF_VALIDITY`` after
it; ``ROTATION_GRACE`` on top covers an issuer that still holds the old CA in memory until it
next reads the Secret (an issuer must read it at least that often). Nothing outlives the CA
itself, so the old one retires at the earlier of that time and its own expiry.

The trust bundle is the PEM concatenation of the current CA and every retiring one not yet
retired, newest first: a file that OpenSSL, Go, GnuTLS (QEMU, libvirt) and Python's ``ssl``
all read as a list of trust anchors, as Kubernetes' own ``kube-root-ca.crt`` does during a
cluster CA rotation.
"""

from __future__ import annotations

import dataclasses
import datetime
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubenova.certs import authority, lifetime

ROTATION_GRACE = datetime.timedelta(days=1)
# How long an announced CA is trusted before it signs: far more than the kubelet needs to
# project a ConfigMap (a minute or two) plus a host agent's check (five minutes), and enough
# for a node that was down for a few hours to catch up.
PROPAGATION = datetime.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class RetiringCA:
    """A CA that signs nothing any more and is trusted until ``retire_at``."""

    cert: x509.Certificate
    retire_at: datetime.datetime

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass(frozen=True)
class UpcomingCA:
    """The next CA: trusted already, signing from ``signs_from`` on."""

    pair: authority.KeyPair
    signs_from: datetime.datetime


@dataclasses.dataclass(frozen=True)
class TrustState:
    """The CA that signs now, the CAs it replaced that are still trusted (newest first), and
    the next CA when one is announced."""

    current: authority.KeyPair
    retiring: tuple[RetiringCA, ...] = ()
    upcoming: UpcomingCA | None = None

    def bundle_pem(self) -> bytes:
        """Every trusted CA certificate: the current one, the announced one, the retiring."""
        upcoming = self.upcoming.pair.cert_pem() if self.upcoming is not None else b""
        return (
            self.current.cert_pem() + upcoming + b"".join(old.cert_pem() for old in self.retiring)
        )


def drop_retired(
    retiring: tuple[RetiringCA, ...], now: datetime.datetime
) -> tuple[RetiringCA, ...]:
    """``retiring`` without the CAs whose overlap has ended at ``now`` (``retire_at`` is the
    first moment one is no longer trusted)."""
    return tuple(old for old in retiring if now < old.retire_at)


def retire_at(
    old: x509.Certificate,
    now: datetime.datetime,
    *,
    leaf_lifetime: datetime.timedelta = authority.MAX_LEAF_VALIDITY,
) -> datetime.datetime:
    """When a CA replaced at ``now`` stops being trusted: once the last leaf it can have signed
    has expired, and never later than the CA itself expires."""
    # To the second, as the Secret keeps it, so a state read back equals the one written.
    last_leaf_gone = (now + leaf_lifetime + ROTATION_GRACE).replace(microsecond=0)
    return min(last_leaf_gone, old.not_valid_after_utc)


def rotate(
    state: TrustState,
    new: authority.KeyPair,
    now: datetime.datetime,
    *,
    leaf_lifetime: datetime.timedelta = authority.MAX_LEAF_VALIDITY,
) -> TrustState:
    """``new`` signs from ``now`` on; the CA it replaces is trusted until :func:`retire_at`,
    and CAs already retired by ``now`` leave the bundle."""
    replaced = RetiringCA(
        state.current.cert, retire_at(state.current.cert, now, leaf_lifetime=leaf_lifetime)
    )
    return TrustState(new, (replaced, *drop_retired(state.retiring, now)))


def announce(
    state: TrustState,
    new: authority.KeyPair,
    now: datetime.datetime,
    *,
    propagation: datetime.timedelta = PROPAGATION,
) -> TrustState:
    """``new`` trusted from ``now`` on, signing from ``now + propagation`` (to the second, as
    the Secret keeps it)."""
    signs_from = (now + propagation).replace(microsecond=0)
    return dataclasses.replace(state, upcoming=UpcomingCA(new, signs_from))


def promote(
    state: TrustState,
    now: datetime.datetime,
    *,
    leaf_lifetime: datetime.timedelta = authority.MAX_LEAF_VALIDITY,
) -> TrustState:
    """The announced CA signs from ``now`` (:func:`rotate`); ValueError when none is."""
    if state.upcoming is None:
        raise ValueError("no CA was announced")
    settled = dataclasses.replace(state, upcoming=None)
    return rotate(settled, state.upcoming.pair, now, leaf_lifetime=leaf_lifetime)


def retiring_to_json(retiring: tuple[RetiringCA, ...]) -> bytes:
    """The retiring CAs as the Secret keeps them: a JSON list, newest first, of
    ``{"certificate": PEM, "retireAt": RFC 3339}``."""
    return json.dumps(
        [
            {"certificate": old.cert_pem().decode(), "retireAt": lifetime.rfc3339(old.retire_at)}
            for old in retiring
        ],
        indent=1,
    ).encode()


def retiring_from_json(data: bytes) -> tuple[RetiringCA, ...]:
    """The inverse of :func:`retiring_to_json`; ValueError for anything else."""
    try:
        entries = json.loads(data)
        if not isinstance(entries, list):
            raise ValueError("not a list")
        return tuple(
            RetiringCA(
                x509.load_pem_x509_certificate(entry["certificate"].encode()),
                _parse_time(entry["retireAt"]),
            )
            for entry in entries
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed retiring CAs: {exc!r}") from exc


def _parse_time(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} names no time zone")
    return moment.astimezone(datetime.UTC)
