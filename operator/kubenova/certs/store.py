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
from collections.abc import Callable

from kubenova.certs import authority, bundle, ca_secret, lifetime
from kubenova.k8s import objects

LOG = logging.getLogger(__name__)

# The Secret's names, as callers of this module know them.
CA_NAME = ca_secret.CA_NAME
LABELS = ca_secret.LABELS
RENEW_BEFORE = ca_secret.RENEW_BEFORE
_ATTEMPTS = 3


def ensure_ca(
    store: objects.Store,
    *,
    name: str = ca_secret.CA_NAME,
    now: datetime.datetime | None = None,
) -> authority.KeyPair:
    """The CA kept in the Secret ``name``, made if need be, published in the ConfigMap
    ``name``."""
    return ensure_trust(store, name=name, now=now).current


def ensure_trust(
    store: objects.Store,
    *,
    name: str = ca_secret.CA_NAME,
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
    name: str = ca_secret.CA_NAME,
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


def announce(
    store: objects.Store,
    *,
    name: str = CA_NAME,
    now: datetime.datetime | None = None,
    signs_in: datetime.timedelta = bundle.PROPAGATION,
) -> bundle.TrustState:
    """An administrator's rotation (``kubenova-manage ca rotate``): a new CA announced now,
    trusted at once and signing from ``now + signs_in``; the bundle is published. ValueError
    when a CA is announced already, or the CA is not one Kubenova made."""
    now = now or _now()

    def with_new_ca(state: bundle.TrustState) -> bundle.TrustState:
        if state.upcoming is not None:
            raise ValueError(
                "a next CA is announced already; it signs from "
                f"{lifetime.rfc3339(state.upcoming.signs_from)} (promote it to sign now)"
            )
        return bundle.announce(state, authority.issue_ca(now=now), now, propagation=signs_in)

    state = _change(store, name, now, with_new_ca, "announced a next CA beside")
    _publish(store, name, state.bundle_pem())
    return state


def promote(
    store: objects.Store,
    *,
    name: str = CA_NAME,
    now: datetime.datetime | None = None,
    leaf_lifetime: datetime.timedelta = authority.MAX_LEAF_VALIDITY,
) -> bundle.TrustState:
    """The announced CA signs from ``now`` on (``kubenova-manage ca promote``), the old one
    retiring as in a planned rotation; the bundle is published. ValueError when none is
    announced, or the CA is not one Kubenova made."""
    now = now or _now()

    def promoted(state: bundle.TrustState) -> bundle.TrustState:
        if state.upcoming is None:
            raise ValueError("no next CA is announced: rotate first")
        return bundle.promote(state, now, leaf_lifetime=leaf_lifetime)

    state = _change(store, name, now, promoted, "promoted the next CA of")
    _publish(store, name, state.bundle_pem())
    return state


def _change(
    store: objects.Store,
    name: str,
    now: datetime.datetime,
    change: Callable[[bundle.TrustState], bundle.TrustState],
    note: str,
) -> bundle.TrustState:
    """Apply ``change`` to the trust state in the Secret ``name``, again from what is there
    when another writer came first."""
    where = f"{store.namespace}/{name}"
    for _ in range(_ATTEMPTS):
        stored, state = _read(store, name, now)
        if not ca_secret.made_by_kubenova(stored):
            raise ValueError(
                f"the CA in Secret {where} was not made by Kubenova: rotate it where it was made"
            )
        state = change(state)
        try:
            store.replace("Secret", ca_secret.rewritten(stored, state))
        except objects.Conflict:
            continue
        LOG.info("%s the CA %s", note, where)
        return state
    raise RuntimeError(f"the CA Secret {where} keeps changing under us")


def trust_state(
    store: objects.Store, *, name: str = CA_NAME, now: datetime.datetime | None = None
) -> bundle.TrustState:
    """The CAs the Secret ``name`` holds, as they are (nothing is written); ValueError when
    there is none that can be used."""
    return _read(store, name, now or _now())[1]


def _read(
    store: objects.Store, name: str, now: datetime.datetime
) -> tuple[objects.StoredObject, bundle.TrustState]:
    where = f"{store.namespace}/{name}"
    stored = store.get("Secret", name)
    if stored is None:
        raise ValueError(f"there is no CA Secret {where} yet: is the operator running?")
    current = ca_secret.read_current(stored, now, renew_before=None)
    if isinstance(current, str):
        raise ValueError(f"the CA in Secret {where} cannot be used: {current}")
    retiring = ca_secret.read_retiring(stored, now)
    return stored, bundle.TrustState(current, retiring, ca_secret.read_upcoming(stored))


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
                store.create("Secret", ca_secret.new_secret(name, state.current))
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
    retiring = ca_secret.read_retiring(stored, now)
    upcoming = ca_secret.read_upcoming(stored)
    ca_or_why = ca_secret.read_current(
        stored, now, renew_before=None if rotate else ca_secret.RENEW_BEFORE
    )
    if isinstance(ca_or_why, str):
        # The announced CA, when there is one, is trusted everywhere already: it takes over.
        replacement = upcoming.pair if upcoming is not None else authority.issue_ca(now=now)
        state = bundle.TrustState(replacement, retiring)
        wanted = ca_secret.new_secret(
            stored.name,
            state.current,
            stored.resource_version,
            retiring=retiring,
            type_=stored.type,
        )
        note = f"replaced ({ca_or_why}; certificates it signed must be issued again)"
        return _Plan(state, wanted, logging.WARNING, note)
    current = bundle.TrustState(ca_or_why, retiring, upcoming)
    if rotate and ca_secret.made_by_kubenova(stored):
        if upcoming is not None and now >= upcoming.signs_from:
            state = bundle.promote(current, now, leaf_lifetime=leaf_lifetime)
            note = (
                f"rotated (the announced one signs and expires at {state.current.not_after};"
                f" the old one is trusted until {state.retiring[0].retire_at})"
            )
            return _Plan(state, ca_secret.rewritten(stored, state), logging.INFO, note)
        if upcoming is None and lifetime.renewal_due(ca_or_why.cert, now):
            state = bundle.announce(current, authority.issue_ca(now=now), now)
            note = (
                "announced the next CA (trusted from now, signing from"
                f" {lifetime.rfc3339(now + bundle.PROPAGATION)}) beside"
            )
            return _Plan(state, ca_secret.rewritten(stored, state), logging.INFO, note)
    elif rotate and lifetime.renewal_due(ca_or_why.cert, now):
        LOG.warning(
            "the CA in Secret %s is due for renewal since %s and expires at %s; Kubenova"
            " renews only a CA it made",
            stored.name,
            lifetime.renew_after(ca_or_why.cert),
            ca_or_why.not_after,
        )
    wanted = ca_secret.kept(stored, current)
    if ca_secret.same(wanted, stored):
        return _Plan(current, None)
    return _Plan(current, wanted, logging.INFO, "updated the retiring CAs and expiry dates of")


def publish_bundle(store: objects.Store, pem: bytes, *, name: str = CA_NAME) -> None:
    """Publish ``pem`` as the ConfigMap ``name``'s ``ca.crt``, where clients look for the
    certificates to trust, whoever issued them (the operator's CA or cert-manager's)."""
    _publish(store, name, pem)


def _publish(store: objects.Store, name: str, pem: bytes) -> None:
    for _ in range(_ATTEMPTS):
        current = store.get("ConfigMap", name)
        if current is not None and current.data.get(ca_secret.PUBLISHED_KEY) == pem:
            return
        published = objects.StoredObject(
            name=name,
            data={ca_secret.PUBLISHED_KEY: pem},
            labels=ca_secret.LABELS,
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
