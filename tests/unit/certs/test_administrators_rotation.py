"""An administrator's rotation of Kubenova's CA (``kubenova-manage ca rotate`` and ``promote``):
the same two steps as the planned rotation, trust before signing, taken when asked rather than
two thirds into the CA's life; refused, with nothing changed, where they cannot apply."""

from __future__ import annotations

import datetime

import pytest

from kubenova.certs import authority, bundle, ca_secret, store
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeObjects

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(days=3)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def objs() -> FakeObjects:
    return FakeObjects()


@pytest.fixture
def first(objs: FakeObjects) -> authority.KeyPair:
    return store.ensure_ca(objs, now=NOW)


def secret(objs: FakeObjects) -> objects.StoredObject:
    return objs.items[("Secret", "kubenova-ca")]


def published(objs: FakeObjects) -> bytes:
    return objs.items[("ConfigMap", "kubenova-ca")].data["ca.crt"]


def test_a_rotation_asked_for_announces_a_ca_trusted_at_once_signing_later(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    state = store.announce(objs, now=LATER, signs_in=HOUR)

    assert state.current.cert == first.cert
    assert state.upcoming is not None
    assert state.upcoming.signs_from == LATER + HOUR
    # Trusted now: published beside the current CA, kept in the Secret with its date.
    assert published(objs) == first.cert_pem() + state.upcoming.pair.cert_pem()
    assert secret(objs).annotations["kubenova.io/next-ca-signs-from"] == "2031-05-04T01:00:00Z"
    # Not signing yet: the operator's pass before that time keeps the current CA...
    assert store.rotate_if_due(objs, now=LATER + HOUR / 2).current.cert == first.cert
    # ...and promotes it from then on.
    promoted = store.rotate_if_due(objs, now=LATER + HOUR)
    assert promoted.current.cert == state.upcoming.pair.cert
    assert [old.cert for old in promoted.retiring] == [first.cert]


def test_a_promotion_makes_the_announced_ca_sign_now_with_the_old_one_retiring(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    announced = store.announce(objs, now=LATER)
    assert announced.upcoming is not None

    state = store.promote(objs, now=LATER + HOUR)

    assert state.current.cert == announced.upcoming.pair.cert
    assert state.upcoming is None
    (retiring,) = state.retiring
    assert retiring.cert == first.cert
    # Still trusted until the last leaf the old one signed has expired.
    assert retiring.retire_at > LATER + HOUR + authority.MAX_LEAF_VALIDITY
    assert published(objs) == state.bundle_pem()
    assert ca_secret.read_upcoming(secret(objs)) is None


def test_a_second_rotation_while_one_is_announced_is_refused_unchanged(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    store.announce(objs, now=LATER)
    before = dict(secret(objs).data)
    with pytest.raises(ValueError, match="announced already; it signs from 2031-05-05T00:00:00Z"):
        store.announce(objs, now=LATER + HOUR)
    assert dict(secret(objs).data) == before


def test_a_promotion_with_nothing_announced_is_refused_unchanged(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    before = dict(secret(objs).data)
    with pytest.raises(ValueError, match="no next CA is announced: rotate first"):
        store.promote(objs, now=LATER)
    assert dict(secret(objs).data) == before


def test_an_administrators_own_ca_is_not_rotated_by_kubenova(objs: FakeObjects) -> None:
    own = authority.issue_ca(now=NOW)
    objs.put(
        "Secret",
        objects.StoredObject(
            name="kubenova-ca",
            data={"tls.crt": own.cert_pem(), "tls.key": own.key_pem()},
            type="kubernetes.io/tls",
        ),
    )
    with pytest.raises(ValueError, match="not made by Kubenova: rotate it where it was made"):
        store.announce(objs, now=LATER)
    assert "next.crt" not in secret(objs).data


def test_no_ca_yet_is_refused(objs: FakeObjects) -> None:
    with pytest.raises(ValueError, match="no CA Secret kubenova/kubenova-ca yet"):
        store.announce(objs, now=LATER)


def test_a_rotation_that_meets_another_writer_reads_again(
    objs: FakeObjects, first: authority.KeyPair
) -> None:
    # The operator's pass rewrites the Secret between the read and the write.
    real_replace = objs.replace
    raced = []

    def replace_after_a_race(kind: objects.Kind, obj: objects.StoredObject) -> None:
        if not raced:
            raced.append(True)
            real_replace(kind, secret(objs))  # bumps the resourceVersion
        real_replace(kind, obj)

    objs.replace = replace_after_a_race  # type: ignore[method-assign]
    objs.calls.clear()
    state = store.announce(objs, now=LATER)
    # The other writer's, the refused one, and the one made again from a fresh read.
    assert objs.calls.count("replace Secret kubenova-ca") == 3
    assert state.upcoming is not None
    stored = ca_secret.read_upcoming(secret(objs))
    assert stored is not None
    assert stored.pair.cert == state.upcoming.pair.cert
    assert state.upcoming.signs_from == LATER + bundle.PROPAGATION
