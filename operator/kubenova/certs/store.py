"""Keep Kubenova's CA in the cluster: its key in a Secret, the certificates to trust in a
ConfigMap.

``ensure_ca(objects)`` returns the CA in the Secret ``kubenova-ca`` (type
``kubernetes.io/tls``: ``tls.crt``, ``tls.key``), making one when there is none, and makes
sure the ConfigMap ``kubenova-ca`` publishes the trust bundle as ``ca.crt``, which is what
clients mount to verify Kubenova's endpoints. Only the operator's service account may read the
Secret; anyone who should trust Kubenova may read the ConfigMap.

``ca.crt`` is the trust bundle (``kubenova.certs.bundle``): the current CA first, then each CA
it replaced whose overlap has not ended. Outside a rotation that is the current CA alone, as
it always was; readers that load it as a CA file (Python's ``ssl``, Go, GnuTLS) trust every
certificate in it. While CAs are retiring, the Secret also holds ``retiring-cas.json``: their
certificates with the time each stops being trusted.

``rotate_if_due(objects)`` does the planned rotation, in two steps, trust before signing
(``kubenova.certs.bundle``): once two thirds of the current CA's life have passed, a new CA is
*announced*: kept as ``next.crt``/``next.key`` with the time it starts signing
(``next-signs-from``, also the annotation ``kubenova.io/next-ca-signs-from``), and published in
the bundle at once. From that time on, it replaces the current CA in ``tls.crt``/``tls.key``
and the old certificate moves to ``retiring-cas.json`` until the last leaf it signed has
expired. It rotates only a CA Kubenova made (the Secret's ``app.kubernetes.io/managed-by``
label); an administrator's own CA is renewed by whoever made it. Both functions drop retiring
CAs whose overlap has ended.

A CA that cannot be read, is not a CA, or (for ``ensure_ca``) expires within ``RENEW_BEFORE``
is replaced outright, without an overlap (a warning says so): every certificate it signed must
then be issued again, and clients see the new ``ca.crt`` once their mounted ConfigMap is
refreshed (the kubelet does that within a minute or two).

Several operators at once end with one CA, as the apiserver's optimistic concurrency makes
them: it refuses all but the first create of the Secret, and every replace that names a
``resourceVersion`` that is no longer current (409 Conflict). The refused writer reads the
Secret again and judges what is there now: after another replica's rotation, the new CA is not
due, so it uses that one and makes none of its own.

An administrator may put a CA of their own into the Secret (any RSA or ECDSA CA, e.g. from
cert-manager); it is used as it is.
"""

from __future__ import annotations

import dataclasses
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
_ATTEMPTS = 3


def ensure_ca(
    store: objects.Store,
    *,
    name: str = CA_NAME,
    now: datetime.datetime | None = None,
) -> authority.KeyPair:
    """The CA kept in the Secret ``name``, made if need be, published in the ConfigMap
    ``name``."""
    return ensure_trust(store, name=name, now=now).current


def ensure_trust(
    store: objects.Store,
    *,
    name: str = CA_NAME,
    now: datetime.datetime | None = None,
) -> bundle.TrustState:
    """As :func:`ensure_ca`, with the CAs still trusted beside it (for a trust bundle)."""
    now = now or _now()
    state = _converge(store, name, now, rotate=False)
    _publish(store, name, state.bundle_pem())
    return state


def rotate_if_due(
    store: objects.Store,
    *,
    name: str = CA_NAME,
    now: datetime.datetime | None = None,
    leaf_lifetime: datetime.timedelta = authority.MAX_LEAF_VALIDITY,
) -> bundle.TrustState:
    """The trust state after rotating the CA in the Secret ``name`` if it is due, published in
    the ConfigMap ``name``. Idempotent: a CA that is not due, or was just rotated by another
    replica, is left as it is. ``leaf_lifetime`` is the longest any leaf it signed lives."""
    now = now or _now()
    state = _converge(store, name, now, rotate=True, leaf_lifetime=leaf_lifetime)
    _publish(store, name, state.bundle_pem())
    return state


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What the Secret should hold: ``wanted`` to write (None when it holds that already), the
    state that results, and what to log once the write went through."""

    state: bundle.TrustState
    wanted: objects.StoredObject | None
    level: int = logging.DEBUG
    note: str = ""


def _converge(
    store: objects.Store,
    name: str,
    now: datetime.datetime,
    *,
    rotate: bool,
    leaf_lifetime: datetime.timedelta = authority.MAX_LEAF_VALIDITY,
) -> bundle.TrustState:
    """Read the Secret, decide what it should hold, write that if it differs; on a refused
    write (someone else wrote meanwhile) start again from what is there now."""
    where = f"{store.namespace}/{name}"
    for _ in range(_ATTEMPTS):
        stored = store.get("Secret", name)
        if stored is None:
            state = bundle.TrustState(authority.issue_ca(now=now))
            try:
                store.create("Secret", _secret(name, state.current))
            except objects.AlreadyExists:
                continue  # another replica made it first: use theirs
            LOG.info("made the CA %s (valid until %s)", where, state.current.not_after)
            return state
        plan = _plan(stored, now, rotate=rotate, leaf_lifetime=leaf_lifetime)
        if plan.wanted is None:
            return plan.state
        try:
            store.replace("Secret", plan.wanted)
        except objects.Conflict:
            continue  # changed meanwhile: judge what is there now
        if plan.note:
            LOG.log(plan.level, "%s the CA %s", plan.note, where)
        return plan.state
    raise RuntimeError(f"the CA Secret {where} keeps changing under us")


def _plan(
    stored: objects.StoredObject,
    now: datetime.datetime,
    *,
    rotate: bool,
    leaf_lifetime: datetime.timedelta,
) -> _Plan:
    retiring = _retiring(stored, now)
    upcoming = _upcoming(stored)
    ca_or_why = _usable(stored, now, renew_before=None if rotate else RENEW_BEFORE)
    if isinstance(ca_or_why, str):
        # The announced CA, when there is one, is trusted everywhere already: it takes over.
        replacement = upcoming.pair if upcoming is not None else authority.issue_ca(now=now)
        state = bundle.TrustState(replacement, retiring)
        wanted = _secret(
            stored.name,
            state.current,
            stored.resource_version,
            retiring=retiring,
            type_=stored.type,
        )
        note = f"replaced ({ca_or_why}; certificates it signed must be issued again)"
        return _Plan(state, wanted, logging.WARNING, note)
    current = bundle.TrustState(ca_or_why, retiring, upcoming)
    if rotate and _ours(stored):
        if upcoming is not None and now >= upcoming.signs_from:
            state = bundle.promote(current, now, leaf_lifetime=leaf_lifetime)
            note = (
                f"rotated (the announced one signs and expires at {state.current.not_after};"
                f" the old one is trusted until {state.retiring[0].retire_at})"
            )
            return _Plan(state, _written(stored, state), logging.INFO, note)
        if upcoming is None and lifetime.renewal_due(ca_or_why.cert, now):
            state = bundle.announce(current, authority.issue_ca(now=now), now)
            note = (
                "announced the next CA (trusted from now, signing from"
                f" {lifetime.rfc3339(now + bundle.PROPAGATION)}) beside"
            )
            return _Plan(state, _written(stored, state), logging.INFO, note)
    elif rotate and lifetime.renewal_due(ca_or_why.cert, now):
        LOG.warning(
            "the CA in Secret %s is due for renewal since %s and expires at %s; Kubenova"
            " renews only a CA it made",
            stored.name,
            lifetime.renew_after(ca_or_why.cert),
            ca_or_why.not_after,
        )
    wanted = _kept(stored, current)
    if _same(wanted, stored):
        return _Plan(current, None)
    return _Plan(current, wanted, logging.INFO, "updated the retiring CAs and expiry dates of")


def _written(stored: objects.StoredObject, state: bundle.TrustState) -> objects.StoredObject:
    return _secret(
        stored.name,
        state.current,
        stored.resource_version,
        retiring=state.retiring,
        upcoming=state.upcoming,
        type_=stored.type,
    )


def _upcoming(stored: objects.StoredObject) -> bundle.UpcomingCA | None:
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


def _usable(
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


def _retiring(
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


def _ours(stored: objects.StoredObject) -> bool:
    return all(stored.labels.get(key) == value for key, value in LABELS.items())


def _annotations(state: bundle.TrustState) -> dict[str, str]:
    annotations = lifetime.expiry_annotations(state.current.cert)
    if state.retiring:
        latest = max(old.retire_at for old in state.retiring)
        annotations[RETIRING_ANNOTATION] = lifetime.rfc3339(latest)
    if state.upcoming is not None:
        annotations[NEXT_ANNOTATION] = lifetime.rfc3339(state.upcoming.signs_from)
    return annotations


def _upcoming_data(upcoming: bundle.UpcomingCA | None) -> dict[str, bytes]:
    if upcoming is None:
        return {}
    return {
        NEXT_CERT_KEY: upcoming.pair.cert_pem(),
        NEXT_KEY_KEY: upcoming.pair.key_pem(),
        NEXT_SIGNS_FROM_KEY: lifetime.rfc3339(upcoming.signs_from).encode(),
    }


def _secret(
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
    data = {CERT_KEY: ca.cert_pem(), KEY_KEY: ca.key_pem(), **_upcoming_data(upcoming)}
    if retiring:
        data[RETIRING_KEY] = bundle.retiring_to_json(retiring)
    return objects.StoredObject(
        name=name,
        data=data,
        labels=LABELS,
        annotations=_annotations(state),
        # A Secret's type cannot change: a replacement keeps the one stored.
        type=type_,
        resource_version=resource_version,
    )


def _kept(stored: objects.StoredObject, state: bundle.TrustState) -> objects.StoredObject:
    """``stored`` with its CA untouched (the bytes as they are, whoever wrote them), the
    retiring CAs of ``state`` and up-to-date expiry annotations; other labels, annotations and
    keys are left as they are."""
    data = {
        key: value
        for key, value in stored.data.items()
        if key != RETIRING_KEY and key not in _NEXT_KEYS
    }
    data.update(_upcoming_data(state.upcoming))
    if state.retiring:
        data[RETIRING_KEY] = bundle.retiring_to_json(state.retiring)
    annotations = {
        key: value for key, value in stored.annotations.items() if key not in _EXPIRY_ANNOTATIONS
    }
    annotations.update(_annotations(state))
    return objects.StoredObject(
        name=stored.name,
        data=data,
        labels=stored.labels,
        annotations=annotations,
        type=stored.type,
        resource_version=stored.resource_version,
    )


def _same(wanted: objects.StoredObject, stored: objects.StoredObject) -> bool:
    return dict(wanted.data) == dict(stored.data) and dict(wanted.annotations) == dict(
        stored.annotations
    )


def _publish(store: objects.Store, name: str, pem: bytes) -> None:
    for _ in range(_ATTEMPTS):
        current = store.get("ConfigMap", name)
        if current is not None and current.data.get(PUBLISHED_KEY) == pem:
            return
        published = objects.StoredObject(
            name=name,
            data={PUBLISHED_KEY: pem},
            labels=LABELS,
            resource_version=current.resource_version if current is not None else None,
        )
        try:
            if current is None:
                store.create("ConfigMap", published)
            else:
                store.replace("ConfigMap", published)
        except (objects.AlreadyExists, objects.Conflict):
            continue
        LOG.info("published the CA certificates in ConfigMap %s/%s", store.namespace, name)
        return
    raise RuntimeError(f"the CA ConfigMap {store.namespace}/{name} keeps changing under us")
