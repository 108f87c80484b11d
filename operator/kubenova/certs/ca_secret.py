"""The CA Secret's format: what Kubenova keeps in the Secret ``kubenova-ca`` and reads back
(see :mod:`kubenova.certs.store` for what it does with it).

``tls.crt``/``tls.key``: the current CA; ``retiring-cas.json``: the CAs it replaced that are
still trusted, each with the time it stops being; ``next.crt``/``next.key``/``next-signs-from``:
the CA announced to take over, and when. Annotations repeat the dates for ``kubectl``
readers. What cannot be read is reported and left out, never guessed at.
"""

from __future__ import annotations

import datetime
import logging

from kubenova.certs import authority, bundle, lifetime
from kubenova.k8s import objects

LOG = logging.getLogger(__name__)

CA_NAME = "kubenova-ca"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
RETIRING_KEY = "retiring-cas.json"
PUBLISHED_KEY = "ca.crt"
# The latest time a retiring CA is still trusted, beside the current CA's expiry annotations.
RETIRING_ANNOTATION = "kubenova.io/retiring-ca-trusted-until"
# The announced next CA (bundle.UpcomingCA): its pair, and when it starts signing.
NEXT_CERT_KEY = "next.crt"
NEXT_KEY_KEY = "next.key"
NEXT_SIGNS_FROM_KEY = "next-signs-from"
NEXT_ANNOTATION = "kubenova.io/next-ca-signs-from"
_NEXT_KEYS = (NEXT_CERT_KEY, NEXT_KEY_KEY, NEXT_SIGNS_FROM_KEY)
RENEW_BEFORE = datetime.timedelta(days=30)
LABELS = {
    "app.kubernetes.io/managed-by": "kubenova-operator",
    "app.kubernetes.io/component": "certificate-authority",
}
_EXPIRY_ANNOTATIONS = (
    lifetime.NOT_AFTER_ANNOTATION,
    lifetime.RENEW_AFTER_ANNOTATION,
    RETIRING_ANNOTATION,
    NEXT_ANNOTATION,
)


def rewritten(stored: objects.StoredObject, state: bundle.TrustState) -> objects.StoredObject:
    return new_secret(
        stored.name,
        state.current,
        stored.resource_version,
        retiring=state.retiring,
        upcoming=state.upcoming,
        type_=stored.type,
    )


def read_upcoming(stored: objects.StoredObject) -> bundle.UpcomingCA | None:
    """The announced CA the Secret keeps; none (with a warning) when it cannot be read, and
    another is announced in its place at the next pass."""
    if not any(key in stored.data for key in _NEXT_KEYS):
        return None
    try:
        pair = authority.KeyPair.from_pem(stored.data[NEXT_CERT_KEY], stored.data[NEXT_KEY_KEY])
        signs_from = datetime.datetime.fromisoformat(
            stored.data[NEXT_SIGNS_FROM_KEY].decode().replace("Z", "+00:00")
        )
        if signs_from.tzinfo is None or not authority.is_ca(pair.cert):
            raise ValueError("not a CA with a time zone")
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        LOG.warning("ignoring the unreadable next CA of the CA Secret %s: %s", stored.name, exc)
        return None
    return bundle.UpcomingCA(pair, signs_from.astimezone(datetime.UTC))


def read_current(
    stored: objects.StoredObject,
    now: datetime.datetime,
    *,
    renew_before: datetime.timedelta | None = RENEW_BEFORE,
) -> authority.KeyPair | str:
    """The stored CA, or why it cannot be used. Without ``renew_before``, a CA is usable up to
    its expiry (a rotation replaces it before, with an overlap)."""
    try:
        ca = authority.KeyPair.from_pem(stored.data[CERT_KEY], stored.data[KEY_KEY])
    except KeyError as exc:
        return f"it has no {exc.args[0]}"
    except ValueError as exc:
        return f"it cannot be read: {exc}"
    if not authority.is_ca(ca.cert):
        return "its certificate is not a CA"
    if ca.not_after - (renew_before or datetime.timedelta(0)) <= now:
        return f"it expires at {ca.not_after.isoformat()}"
    return ca


def read_retiring(
    stored: objects.StoredObject, now: datetime.datetime
) -> tuple[bundle.RetiringCA, ...]:
    """The retiring CAs the Secret keeps whose overlap has not ended; none (with a warning)
    when they cannot be read, as trusting fewer CAs only fails closed."""
    data = stored.data.get(RETIRING_KEY)
    if data is None:
        return ()
    try:
        kept = bundle.retiring_from_json(data)
    except ValueError as exc:
        LOG.warning(
            "ignoring the unreadable %s of the CA Secret %s: %s", RETIRING_KEY, stored.name, exc
        )
        return ()
    return bundle.drop_retired(kept, now)


def made_by_kubenova(stored: objects.StoredObject) -> bool:
    return all(stored.labels.get(key) == value for key, value in LABELS.items())


def expiry_annotations(state: bundle.TrustState) -> dict[str, str]:
    annotations = lifetime.expiry_annotations(state.current.cert)
    if state.retiring:
        latest = max(old.retire_at for old in state.retiring)
        annotations[RETIRING_ANNOTATION] = lifetime.rfc3339(latest)
    if state.upcoming is not None:
        annotations[NEXT_ANNOTATION] = lifetime.rfc3339(state.upcoming.signs_from)
    return annotations


def upcoming_entries(upcoming: bundle.UpcomingCA | None) -> dict[str, bytes]:
    if upcoming is None:
        return {}
    return {
        NEXT_CERT_KEY: upcoming.pair.cert_pem(),
        NEXT_KEY_KEY: upcoming.pair.key_pem(),
        NEXT_SIGNS_FROM_KEY: lifetime.rfc3339(upcoming.signs_from).encode(),
    }


def new_secret(
    name: str,
    ca: authority.KeyPair,
    resource_version: str | None = None,
    *,
    retiring: tuple[bundle.RetiringCA, ...] = (),
    upcoming: bundle.UpcomingCA | None = None,
    type_: str = "kubernetes.io/tls",
) -> objects.StoredObject:
    """The Secret holding ``ca`` as Kubenova writes a CA it made."""
    state = bundle.TrustState(ca, retiring, upcoming)
    data = {CERT_KEY: ca.cert_pem(), KEY_KEY: ca.key_pem(), **upcoming_entries(upcoming)}
    if retiring:
        data[RETIRING_KEY] = bundle.retiring_to_json(retiring)
    return objects.StoredObject(
        name=name,
        data=data,
        labels=LABELS,
        annotations=expiry_annotations(state),
        # A Secret's type cannot change: a replacement keeps the one stored.
        type=type_,
        resource_version=resource_version,
    )


def kept(stored: objects.StoredObject, state: bundle.TrustState) -> objects.StoredObject:
    """``stored`` with its CA untouched (the bytes as they are, whoever wrote them), the
    retiring CAs of ``state`` and up-to-date expiry annotations; other labels, annotations and
    keys are left as they are."""
    data = {
        key: value
        for key, value in stored.data.items()
        if key != RETIRING_KEY and key not in _NEXT_KEYS
    }
    data.update(upcoming_entries(state.upcoming))
    if state.retiring:
        data[RETIRING_KEY] = bundle.retiring_to_json(state.retiring)
    annotations = {
        key: value for key, value in stored.annotations.items() if key not in _EXPIRY_ANNOTATIONS
    }
    annotations.update(expiry_annotations(state))
    return objects.StoredObject(
        name=stored.name,
        data=data,
        labels=stored.labels,
        annotations=annotations,
        type=stored.type,
        resource_version=stored.resource_version,
    )


def same(wanted: objects.StoredObject, stored: objects.StoredObject) -> bool:
    return dict(wanted.data) == dict(stored.data) and dict(wanted.annotations) == dict(
        stored.annotations
    )
