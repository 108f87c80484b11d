"""Keep Kubenova's CA in the cluster: its key in a Secret, its certificate in a ConfigMap.

``ensure_ca(objects)`` returns the CA in the Secret ``kubenova-ca`` (type
``kubernetes.io/tls``: ``tls.crt``, ``tls.key``), making one when there is none, and makes
sure the ConfigMap ``kubenova-ca`` publishes its certificate as ``ca.crt``, which is what
clients mount to verify Kubenova's endpoints. Only the operator's service account may read the
Secret; anyone who should trust Kubenova may read the ConfigMap.

A CA that cannot be read, is not a CA, or expires within ``RENEW_BEFORE`` is replaced by a new
one (a warning says so): every certificate it signed must then be issued again, and clients
see the new ``ca.crt`` once their mounted ConfigMap is refreshed (the kubelet does that within
a minute or two). Several operators racing to make the first CA end with one: the apiserver
refuses all but the first create, and the others use what it stored.

An administrator may put a CA of their own into the Secret (any RSA or ECDSA CA, e.g. from
cert-manager); it is used as it is.
"""

from __future__ import annotations

import datetime
import logging

from kubenova.certs import authority
from kubenova.k8s import objects

LOG = logging.getLogger(__name__)

CA_NAME = "kubenova-ca"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
PUBLISHED_KEY = "ca.crt"
RENEW_BEFORE = datetime.timedelta(days=30)
LABELS = {
    "app.kubernetes.io/managed-by": "kubenova-operator",
    "app.kubernetes.io/component": "certificate-authority",
}


def ensure_ca(
    store: objects.Store,
    *,
    name: str = CA_NAME,
    now: datetime.datetime | None = None,
) -> authority.KeyPair:
    """The CA kept in the Secret ``name``, made if need be, published in the ConfigMap
    ``name``."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca = _ensure_secret(store, name, now)
    _publish(store, name, ca)
    return ca


def _ensure_secret(store: objects.Store, name: str, now: datetime.datetime) -> authority.KeyPair:
    for _ in range(3):
        stored = store.get("Secret", name)
        if stored is None:
            ca = authority.issue_ca(now=now)
            try:
                store.create("Secret", _secret(name, ca))
            except objects.AlreadyExists:
                continue  # another replica made it first: use theirs
            LOG.info("made the CA %s/%s (valid until %s)", store.namespace, name, ca.not_after)
            return ca
        ca_or_why = _usable(stored, now)
        if isinstance(ca_or_why, authority.KeyPair):
            return ca_or_why
        ca = authority.issue_ca(now=now)
        replacement = _secret(name, ca, resource_version=stored.resource_version)
        try:
            store.replace("Secret", replacement)
        except objects.Conflict:
            continue  # changed meanwhile: judge what is there now
        LOG.warning(
            "replaced the CA %s/%s (%s); certificates it signed must be issued again",
            store.namespace,
            name,
            ca_or_why,
        )
        return ca
    raise RuntimeError(f"the CA Secret {store.namespace}/{name} keeps changing under us")


def _usable(stored: objects.StoredObject, now: datetime.datetime) -> authority.KeyPair | str:
    """The stored CA, or why it cannot be used."""
    try:
        ca = authority.KeyPair.from_pem(stored.data[CERT_KEY], stored.data[KEY_KEY])
    except KeyError as exc:
        return f"it has no {exc.args[0]}"
    except ValueError as exc:
        return f"it cannot be read: {exc}"
    if not authority.is_ca(ca.cert):
        return "its certificate is not a CA"
    if ca.not_after - RENEW_BEFORE <= now:
        return f"it expires at {ca.not_after.isoformat()}"
    return ca


def _secret(
    name: str, ca: authority.KeyPair, resource_version: str | None = None
) -> objects.StoredObject:
    return objects.StoredObject(
        name=name,
        data={CERT_KEY: ca.cert_pem(), KEY_KEY: ca.key_pem()},
        labels=LABELS,
        type="kubernetes.io/tls",
        resource_version=resource_version,
    )


def _publish(store: objects.Store, name: str, ca: authority.KeyPair) -> None:
    pem = ca.cert_pem()
    for _ in range(3):
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
        LOG.info("published the CA certificate in ConfigMap %s/%s", store.namespace, name)
        return
    raise RuntimeError(f"the CA ConfigMap {store.namespace}/{name} keeps changing under us")
