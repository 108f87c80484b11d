"""Two operators rotating a due CA at once make exactly one new CA, at each of its two steps
(announcing the successor, then having it sign): the apiserver refuses the second replace (409
on a stale resourceVersion), and the refused one reads again and uses what the other wrote. Run
through the real ``NamespacedObjects`` against a fake CoreV1Api."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest

from kubenova.certs import authority, bundle, store
from kubenova.k8s import objects
from tests.unit.certs.fake_core import FakeCoreV1Api, namespaced_objects
from tests.unit.interleavings import Turns, every_interleaving

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
# Two thirds into the life of a CA made at NOW (its successor is announced), when the successor
# signs, and when the CA it replaces then retires.
DUE = datetime.datetime(2037, 12, 28, 7, 58, 20, tzinfo=datetime.UTC)
PROMOTED = DUE + bundle.PROPAGATION
RETIRED = datetime.datetime(2038, 3, 30, 7, 58, 20, tzinfo=datetime.UTC)


def due_world(
    monkeypatch: pytest.MonkeyPatch, calls: list[str] | None = None, *, announced: bool = True
) -> tuple[FakeCoreV1Api, objects.NamespacedObjects, authority.KeyPair]:
    """A namespace whose CA, made at NOW, is due at DUE, its successor announced then unless
    ``announced`` is False; nothing recorded yet."""
    api = FakeCoreV1Api(calls)
    objs = namespaced_objects(api, monkeypatch)
    old = store.ensure_ca(objs, now=NOW)
    if announced:
        store.rotate_if_due(objs, now=DUE)
    api.secret_writes.clear()
    del api.calls[:]
    return api, objs, old


def test_a_replica_refused_by_a_conflict_uses_the_ca_the_other_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, objs, old = due_world(monkeypatch)
    theirs: list[bundle.TrustState] = []
    # The other replica rotates between this one's read and its replace.
    api.before_replace = lambda: theirs.append(store.rotate_if_due(objs, now=PROMOTED))
    ours = store.rotate_if_due(objs, now=PROMOTED)
    assert api.calls == [
        "read Secret kubenova-ca",
        "replace Secret kubenova-ca",  # ours: judged after theirs, refused with a 409
        "read Secret kubenova-ca",
        "replace Secret kubenova-ca",
        "read ConfigMap kubenova-ca",
        "replace ConfigMap kubenova-ca",
        "read Secret kubenova-ca",  # ours again: the CA is new, not due, nothing to write
        "read ConfigMap kubenova-ca",
    ]
    assert api.conflicts == 1
    assert len(api.secret_writes) == 1
    assert ours.current.cert == theirs[0].current.cert
    assert ours.current.cert_pem() == api.secret_writes[0]
    assert ours.retiring == (bundle.RetiringCA(old.cert, RETIRED),)


def test_two_operators_rotating_at_once_make_one_ca_in_every_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    olds: list[authority.KeyPair] = []

    def world(calls: Turns) -> tuple[FakeCoreV1Api, objects.NamespacedObjects]:
        api, objs, old = due_world(monkeypatch, calls)
        olds.append(old)
        return api, objs

    def operators(
        made: tuple[FakeCoreV1Api, objects.NamespacedObjects],
    ) -> dict[str, Callable[[], object]]:
        objs = made[1]
        return {name: lambda: store.rotate_if_due(objs, now=PROMOTED) for name in ("a", "b")}

    orders = conflicts = 0
    for (api, _), run in every_interleaving(world, operators):
        orders += 1
        old = olds[-1]
        a, b = run.results["a"], run.results["b"]
        assert isinstance(a, bundle.TrustState), f"{a!r} ({run})"
        assert isinstance(b, bundle.TrustState), f"{b!r} ({run})"
        assert len(api.secret_writes) == 1, run
        assert a.current.cert_pem() == b.current.cert_pem() == api.secret_writes[0], run
        assert a.retiring == b.retiring == (bundle.RetiringCA(old.cert, RETIRED),), run
        published = api.items[("ConfigMap", "kubenova-ca")].data["ca.crt"]
        assert published == (a.current.cert_pem() + old.cert_pem()).decode(), run
        conflicts += api.conflicts
    # Each makes at least four calls (read and replace the Secret, read and write the ConfigMap).
    assert orders >= 20
    assert conflicts > 0


def test_two_operators_announcing_at_once_announce_one_successor_in_every_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def world(calls: Turns) -> tuple[FakeCoreV1Api, objects.NamespacedObjects]:
        api, objs, _ = due_world(monkeypatch, calls, announced=False)
        return api, objs

    def operators(
        made: tuple[FakeCoreV1Api, objects.NamespacedObjects],
    ) -> dict[str, Callable[[], object]]:
        objs = made[1]
        return {name: lambda: store.rotate_if_due(objs, now=DUE) for name in ("a", "b")}

    orders = 0
    for (api, _), run in every_interleaving(world, operators):
        orders += 1
        a, b = run.results["a"], run.results["b"]
        assert isinstance(a, bundle.TrustState), f"{a!r} ({run})"
        assert isinstance(b, bundle.TrustState), f"{b!r} ({run})"
        assert a.upcoming is not None, run
        assert b.upcoming is not None, run
        assert a.upcoming.pair.cert == b.upcoming.pair.cert, run
        assert a.current.cert == b.current.cert, run
        assert len(api.secret_writes) == 1, run
    assert orders >= 20
