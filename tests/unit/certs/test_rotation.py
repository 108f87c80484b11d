"""The CA rotates two thirds into its life, trust before signing: its successor is announced
(trusted, signing nothing) and signs a day later; the CA it replaces stays in the trust bundle
until the last leaf it signed has expired, and leaves it after; the Secret shows the dates."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.x509 import verification

from kubenova.certs import authority, bundle, ca_secret, lifetime, store
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeObjects

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
# Two thirds into the life of a CA made at NOW (see test_renewal): its successor is announced.
DUE = datetime.datetime(2037, 12, 28, 7, 58, 20, tzinfo=datetime.UTC)
# DUE + PROPAGATION (1 day): the successor signs.
PROMOTED = datetime.datetime(2037, 12, 29, 7, 58, 20, tzinfo=datetime.UTC)
# PROMOTED + MAX_LEAF_VALIDITY (90 days) + ROTATION_GRACE (1 day).
RETIRED = datetime.datetime(2038, 3, 30, 7, 58, 20, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)
MICRO = datetime.timedelta(microseconds=1)


@pytest.fixture
def objs() -> FakeObjects:
    return FakeObjects()


@pytest.fixture
def first(objs: FakeObjects) -> authority.KeyPair:
    ca = store.ensure_ca(objs, now=NOW)
    objs.calls.clear()
    return ca


def secret(objs: FakeObjects) -> objects.StoredObject:
    return objs.items[("Secret", "kubenova-ca")]


def view(state: bundle.TrustState) -> tuple[x509.Certificate, tuple[bundle.RetiringCA, ...]]:
    """A state as comparable values (a private key object equals only itself)."""
    return state.current.cert, state.retiring


def published(objs: FakeObjects) -> bytes:
    return objs.items[("ConfigMap", "kubenova-ca")].data["ca.crt"]


def rotate_fully(objs: FakeObjects, at: datetime.datetime) -> bundle.TrustState:
    """Both steps of a due CA's rotation: its successor announced at ``at``, signing one
    PROPAGATION later."""
    store.rotate_if_due(objs, now=at)
    return store.rotate_if_due(objs, now=at + bundle.PROPAGATION)


def test_a_new_ca_secret_shows_when_it_expires_and_when_it_rotates(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    assert secret(objs).annotations == {
        "kubenova.io/not-after": "2041-04-28T00:00:00Z",
        "kubenova.io/renew-after": "2037-12-28T07:58:20Z",
    }
    assert set(secret(objs).data) == {"tls.crt", "tls.key"}
    assert published(objs) == first.cert_pem()


def test_a_ca_not_yet_due_is_left_as_it_is(objs: FakeObjects, first: authority.KeyPair) -> None:
    state = store.rotate_if_due(objs, now=DUE - MICRO)
    assert view(state) == (first.cert, ())
    assert objs.calls == ["get Secret kubenova-ca", "get ConfigMap kubenova-ca"]


def test_a_due_ca_first_announces_its_successor_trusted_but_not_signing(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    state = store.rotate_if_due(objs, now=DUE)
    assert state.current.cert == first.cert
    assert state.upcoming is not None
    successor = state.upcoming.pair
    assert successor.cert != first.cert
    assert authority.is_ca(successor.cert)
    assert state.upcoming.signs_from == PROMOTED
    # Trusted everywhere from now on: the published bundle holds it.
    assert published(objs) == first.cert_pem() + successor.cert_pem()
    stored = secret(objs)
    assert stored.data["tls.crt"] == first.cert_pem()
    assert stored.data["next.crt"] == successor.cert_pem()
    assert stored.data["next-signs-from"] == b"2037-12-29T07:58:20Z"
    assert stored.annotations["kubenova.io/next-ca-signs-from"] == "2037-12-29T07:58:20Z"
    # It signs nothing yet, up to the moment it is due to.
    assert store.ensure_ca(objs, now=PROMOTED - MICRO).cert == first.cert
    assert store.rotate_if_due(objs, now=PROMOTED - SECOND).current.cert == first.cert


def test_the_announced_ca_signs_a_day_later_and_the_old_one_stays_trusted_beside_it(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    announced = store.rotate_if_due(objs, now=DUE).upcoming
    assert announced is not None
    state = store.rotate_if_due(objs, now=PROMOTED)
    new = state.current
    assert new.cert == announced.pair.cert
    assert state.upcoming is None
    assert new.not_after == datetime.datetime(2047, 12, 26, 7, 58, 20, tzinfo=datetime.UTC)
    assert state.retiring == (bundle.RetiringCA(first.cert, RETIRED),)
    stored = secret(objs)
    assert stored.data["tls.crt"] == new.cert_pem()
    assert stored.data["tls.key"] == new.key_pem()
    assert not {"next.crt", "next.key", "next-signs-from"} & set(stored.data)
    assert json.loads(stored.data["retiring-cas.json"]) == [
        {"certificate": first.cert_pem().decode(), "retireAt": "2038-03-30T07:58:20Z"}
    ]
    assert stored.annotations == {
        "kubenova.io/not-after": "2047-12-26T07:58:20Z",
        "kubenova.io/renew-after": "2044-08-26T15:56:40Z",
        "kubenova.io/retiring-ca-trusted-until": "2038-03-30T07:58:20Z",
    }
    assert stored.type == "kubernetes.io/tls"
    assert published(objs) == new.cert_pem() + first.cert_pem()


def test_a_leaf_the_successor_signs_is_trusted_by_a_bundle_read_when_it_was_announced(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    store.rotate_if_due(objs, now=DUE)
    bundle_of_a_slow_peer = published(objs)  # read once, right after the announcement
    signer = rotate_fully(objs, DUE).current
    leaf = authority.issue_server_cert(signer, ["svc.kubenova.svc"], now=PROMOTED + SECOND)
    assert trusted_at(bundle_of_a_slow_peer, leaf.cert, PROMOTED + SECOND)


def test_rotating_again_at_once_changes_nothing(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    rotated = rotate_fully(objs, DUE)
    objs.calls.clear()
    again = store.rotate_if_due(objs, now=PROMOTED + SECOND)
    assert view(again) == view(rotated)
    assert objs.calls == ["get Secret kubenova-ca", "get ConfigMap kubenova-ca"]


def test_leaves_are_signed_by_the_newest_ca_after_a_rotation(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    rotated = rotate_fully(objs, DUE)
    objs.calls.clear()
    signer = store.ensure_ca(objs, now=PROMOTED + SECOND)
    assert signer.cert == rotated.current.cert
    assert objs.calls == ["get Secret kubenova-ca", "get ConfigMap kubenova-ca"]
    leaf = authority.issue_server_cert(signer, ["x"], now=PROMOTED + SECOND)
    leaf.cert.verify_directly_issued_by(rotated.current.cert)


def trusted_at(pem: bytes, leaf: x509.Certificate, when: datetime.datetime) -> bool:
    anchors = verification.Store(x509.load_pem_x509_certificates(pem))
    builder = verification.PolicyBuilder().store(anchors).time(when)
    try:
        builder.build_server_verifier(x509.DNSName("svc.kubenova.svc")).verify(leaf, [])
    except verification.VerificationError:
        return False
    return True


def test_the_old_ca_stays_in_the_bundle_until_its_last_leaf_expires_and_leaves_after(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    last_leaf = authority.issue_server_cert(
        first, ["svc.kubenova.svc"], validity=authority.MAX_LEAF_VALIDITY, now=PROMOTED - SECOND
    )
    new = rotate_fully(objs, DUE).current
    assert last_leaf.not_after < RETIRED
    while_valid = last_leaf.not_after - SECOND
    assert store.ensure_trust(objs, now=while_valid).bundle_pem() == published(objs)
    assert published(objs) == new.cert_pem() + first.cert_pem()
    assert trusted_at(published(objs), last_leaf.cert, while_valid)

    assert store.ensure_trust(objs, now=RETIRED - MICRO).retiring != ()
    assert published(objs) == new.cert_pem() + first.cert_pem()

    state = store.ensure_trust(objs, now=RETIRED)
    assert view(state) == (new.cert, ())
    assert published(objs) == new.cert_pem()
    assert set(secret(objs).data) == {"tls.crt", "tls.key"}
    assert "kubenova.io/retiring-ca-trusted-until" not in secret(objs).annotations
    assert not trusted_at(published(objs), last_leaf.cert, while_valid)


def test_a_ca_is_never_trusted_past_its_own_expiry(objs: FakeObjects) -> None:
    short = authority.issue_ca(now=NOW, validity=datetime.timedelta(days=60))
    objs.put("Secret", ca_secret.new_secret("kubenova-ca", short))
    state = rotate_fully(objs, NOW + datetime.timedelta(days=45))
    assert state.retiring == (
        bundle.RetiringCA(short.cert, datetime.datetime(2031, 6, 30, tzinfo=datetime.UTC)),
    )


def test_a_second_rotation_keeps_both_older_cas_newest_first(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    second = rotate_fully(objs, DUE).current
    # A CA that lives 100 days is due after 66 days 16 h, well inside the first's overlap.
    short = authority.issue_ca(now=DUE, validity=datetime.timedelta(days=100))
    objs.put(
        "Secret",
        ca_secret.new_secret(
            "kubenova-ca", short, retiring=ca_secret.read_retiring(secret(objs), PROMOTED)
        ),
    )
    later = PROMOTED + datetime.timedelta(days=70)
    state = rotate_fully(objs, later)
    assert [old.cert for old in state.retiring] == [short.cert, first.cert]
    assert state.retiring[1].retire_at == RETIRED
    assert published(objs) == state.current.cert_pem() + short.cert_pem() + first.cert_pem()
    assert second.cert not in [old.cert for old in state.retiring]


def test_an_administrators_own_ca_is_not_rotated_but_shows_its_dates(objs: FakeObjects) -> None:
    theirs = authority.issue_ca(now=NOW)
    objs.put(
        "Secret",
        objects.StoredObject(
            name="kubenova-ca",
            data={"tls.crt": theirs.cert_pem(), "tls.key": theirs.key_pem()},
            annotations={"owner": "pki-team"},
        ),
    )
    state = store.rotate_if_due(objs, now=DUE)
    assert view(state) == (theirs.cert, ())
    assert secret(objs).data == {"tls.crt": theirs.cert_pem(), "tls.key": theirs.key_pem()}
    assert secret(objs).labels == {}
    assert secret(objs).annotations == {
        "owner": "pki-team",
        "kubenova.io/not-after": "2041-04-28T00:00:00Z",
        "kubenova.io/renew-after": "2037-12-28T07:58:20Z",
    }


def test_a_ca_that_cannot_be_read_is_replaced_and_the_retiring_ones_stay(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    rotate_fully(objs, DUE)
    broken = dict(secret(objs).data, **{"tls.crt": b"garbage"})
    objs.put("Secret", objects.StoredObject("kubenova-ca", broken, labels=store.LABELS))
    state = store.ensure_trust(objs, now=PROMOTED + SECOND)
    assert state.retiring == (bundle.RetiringCA(first.cert, RETIRED),)
    assert published(objs) == state.current.cert_pem() + first.cert_pem()


def test_retiring_cas_that_cannot_be_read_are_dropped(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    rotate_fully(objs, DUE)
    current = secret(objs)
    objs.put(
        "Secret",
        objects.StoredObject(
            "kubenova-ca",
            dict(current.data, **{"retiring-cas.json": b"[{}]"}),
            labels=current.labels,
            annotations=current.annotations,
            type=current.type,
        ),
    )
    state = store.ensure_trust(objs, now=PROMOTED + SECOND)
    assert state.retiring == ()
    assert set(secret(objs).data) == {"tls.crt", "tls.key"}
    assert published(objs) == state.current.cert_pem()


def test_a_ca_secret_written_before_the_annotations_existed_gets_them(objs: FakeObjects) -> None:
    ca = authority.issue_ca(now=NOW)
    objs.put(
        "Secret",
        objects.StoredObject(
            name="kubenova-ca",
            data={"tls.crt": ca.cert_pem(), "tls.key": ca.key_pem()},
            labels=store.LABELS,
            type="kubernetes.io/tls",
        ),
    )
    assert store.ensure_ca(objs, now=NOW).cert == ca.cert
    assert secret(objs).annotations == lifetime.expiry_annotations(ca.cert)
    assert secret(objs).data == {"tls.crt": ca.cert_pem(), "tls.key": ca.key_pem()}


def test_a_ca_that_cannot_be_read_gives_way_to_the_announced_one(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    announced = store.rotate_if_due(objs, now=DUE).upcoming
    assert announced is not None
    broken = dict(secret(objs).data, **{"tls.key": b"garbage"})
    objs.put("Secret", objects.StoredObject("kubenova-ca", broken, labels=store.LABELS))
    # Trusted everywhere already, it takes over at once rather than a CA nobody trusts yet.
    assert store.ensure_ca(objs, now=DUE + SECOND).cert == announced.pair.cert


def test_an_unreadable_announcement_is_dropped_and_made_again(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    store.rotate_if_due(objs, now=DUE)
    damaged = dict(secret(objs).data, **{"next-signs-from": b"tomorrow"})
    objs.put(
        "Secret",
        objects.StoredObject("kubenova-ca", damaged, labels=store.LABELS, type="kubernetes.io/tls"),
    )
    state = store.rotate_if_due(objs, now=DUE + SECOND)
    assert state.current.cert == first.cert
    assert state.upcoming is not None
    assert state.upcoming.signs_from == PROMOTED + SECOND
