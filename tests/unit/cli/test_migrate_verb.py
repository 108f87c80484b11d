"""``kubectl nova migrate``: the InstanceMigration it creates, and the exit code and output of
its wait, over a fake of its API calls."""

from __future__ import annotations

import copy

import pytest

from kubenova.cli import kube, kubectl_nova, request_object
from tests.unit.cli import helpers


def _migration(phase=None, message=None, **status):
    obj = {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "InstanceMigration",
        "metadata": {"name": "web-1-migration-x", "namespace": "default", "resourceVersion": "7"},
        "spec": {"instance": "web-1", "type": "Cold"},
        "status": dict(status),
    }
    if phase is not None:
        obj["status"]["phase"] = phase
    if message is not None:
        obj["status"]["message"] = message
    return obj


@pytest.fixture
def fake(monkeypatch):
    class Fake:
        created: list = []
        life: list = [_migration()]

    def create(cluster, plural, body):
        Fake.created.append((cluster.namespace, plural, copy.deepcopy(body)))
        return Fake.life[0]

    def watch(cluster, plural, name, resource_version, timeout_seconds):
        return iter([("MODIFIED", obj) for obj in Fake.life[1:]])

    monkeypatch.setattr(kube, "connect", lambda k, c, n: helpers.cluster(n or "default"))
    monkeypatch.setattr(kube, "get_instance", lambda cluster, name: helpers.instance(name))
    monkeypatch.setattr(request_object, "create", create)
    monkeypatch.setattr(request_object, "watch", watch)
    monkeypatch.setattr(request_object, "get", lambda cluster, plural, name: Fake.life[-1])
    return Fake


def test_it_creates_an_owned_cold_migration_to_the_host_asked_for_and_waits(fake, capsys):
    fake.life = [
        _migration(),
        _migration("Running", sourceHost="h1"),
        _migration("Succeeded", sourceHost="h1", targetHost="h2"),
    ]
    assert kubectl_nova.main(["migrate", "web-1", "--host", "h2", "-n", "prod"]) == 0

    namespace, plural, body = fake.created[0]
    assert (namespace, plural, body["kind"]) == ("prod", "instancemigrations", "InstanceMigration")
    assert body["spec"] == {"instance": "web-1", "type": "Cold", "targetHost": "h2"}
    assert body["metadata"]["name"].startswith("web-1-migration-")
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    out = capsys.readouterr().out
    assert "web-1-migration-x: Running" in out
    assert "instance web-1 moved from h1 to h2" in out


def test_without_a_host_the_scheduler_picks(fake) -> None:
    fake.life = [_migration(), _migration("Succeeded")]
    assert kubectl_nova.main(["migrate", "web-1"]) == 0
    assert "targetHost" not in fake.created[0][2]["spec"]


def test_a_failed_migration_exits_1_with_its_message(fake, capsys):
    fake.life = [_migration(), _migration("Failed", "cannot migrate: no host has room")]
    assert kubectl_nova.main(["migrate", "web-1"]) == 1
    assert "error: migration of instance web-1 failed: cannot migrate: no host has room" in (
        capsys.readouterr().err
    )


def test_live_asks_for_a_live_migration_and_shows_its_progress_and_figures(fake, capsys):
    fake.life = [
        _migration(),
        _migration("Running", progress={"percent": 40}),
        _migration("Running", progress={"percent": 90}),
        _migration(
            "Succeeded", sourceHost="h1", targetHost="h2", totalSeconds=1.234,
            downtimeMilliseconds=38, progress={"percent": 100},
        ),
    ]  # fmt: skip
    assert kubectl_nova.main(["migrate", "web-1", "--live"]) == 0

    assert fake.created[0][2]["spec"] == {"instance": "web-1", "type": "Live"}
    out = capsys.readouterr().out
    assert "web-1-migration-x: Running 40%" in out
    assert "web-1-migration-x: Running 90%" in out
    assert "moved from h1 to h2 in 1.23 s, downtime 38 ms" in out
