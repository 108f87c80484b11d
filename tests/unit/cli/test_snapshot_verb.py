"""``kubectl nova snapshot``: the InstanceSnapshot it creates, and the exit code and output of
its wait, over a fake of its API calls."""

from __future__ import annotations

import copy

import pytest
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import kube, kubectl_nova
from kubenova.cli import snapshot as snapshot_verb
from tests.unit.cli import helpers


def _snapshot(phase=None, reason=None, message="", **status):
    obj = {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "InstanceSnapshot",
        "metadata": {"name": "web-1-img", "namespace": "default", "resourceVersion": "7"},
        "spec": {"instance": "web-1", "imageName": "web-1-img"},
        "status": dict(status),
    }
    if phase is not None:
        obj["status"]["phase"] = phase
    if reason is not None:
        obj["status"]["conditions"] = [
            {"type": "Ready", "status": "False", "reason": reason, "message": message}
        ]
    return obj


@pytest.fixture
def fake(monkeypatch):
    """The snapshot's life as a list of objects: the create answers the first, the watch
    yields the rest."""

    class Fake:
        created: list = []
        life: list = [_snapshot()]

    def create(cluster, body):
        Fake.created.append((cluster.namespace, copy.deepcopy(body)))
        return Fake.life[0]

    def watch(cluster, name, resource_version, timeout_seconds):
        return iter([("MODIFIED", obj) for obj in Fake.life[1:]])

    def get(cluster, name):
        return Fake.life[-1]

    monkeypatch.setattr(kube, "connect", lambda k, c, n: helpers.cluster(n or "default"))
    monkeypatch.setattr(kube, "get_instance", lambda cluster, name: helpers.instance(name))
    monkeypatch.setattr(snapshot_verb, "create", create)
    monkeypatch.setattr(snapshot_verb, "watch", watch)
    monkeypatch.setattr(snapshot_verb, "get", get)
    monkeypatch.setattr(snapshot_verb, "POLL_INTERVAL", 0.01)
    return Fake


def test_it_creates_an_instancesnapshot_named_after_the_image_and_waits_for_success(fake, capsys):
    fake.life = [
        _snapshot(),
        _snapshot("InProgress"),
        _snapshot("Succeeded", imageName="web-1-img", sha256="ab" * 32, sizeBytes=1234),
    ]
    assert kubectl_nova.main(["snapshot", "web-1", "web-1-img", "-n", "prod"]) == 0
    namespace, body = fake.created[0]
    assert namespace == "prod"
    assert body["kind"] == "InstanceSnapshot"
    assert body["metadata"]["name"] == "web-1-img"
    assert body["spec"] == {"instance": "web-1", "imageName": "web-1-img"}
    # Owned by the Instance: collected with it (the Image is not).
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "compute.kubenova.io/v1alpha1",
            "kind": "Instance",
            "name": "web-1",
            "uid": "uid-1",
        }
    ]
    out = capsys.readouterr().out
    assert "web-1-img: InProgress" in out
    assert "succeeded: image web-1-img (sha256 " + "ab" * 32 + ", 1234 bytes)" in out


def test_a_refused_snapshot_exits_1_with_the_reason(fake, capsys):
    refusal = "cannot snapshot: the instance is error; snapshot needs vm_state active or paused"
    fake.life = [_snapshot(), _snapshot("Failed", "InvalidState", refusal)]
    assert kubectl_nova.main(["snapshot", "web-1", "web-1-img"]) == 1
    err = capsys.readouterr().err
    assert f"error: snapshot of instance web-1 refused (InvalidState): {refusal}" in err


def test_a_failed_snapshot_exits_1_saying_it_failed(fake, capsys):
    fake.life = [_snapshot(), _snapshot("Failed", "SnapshotFailed", "on host h1: qemu-img ...")]
    assert kubectl_nova.main(["snapshot", "web-1", "web-1-img"]) == 1
    assert "failed (SnapshotFailed): on host h1: qemu-img" in capsys.readouterr().err


def test_no_wait_returns_once_it_is_created(fake, capsys):
    assert kubectl_nova.main(["snapshot", "web-1", "web-1-img", "--no-wait"]) == 0
    assert "instancesnapshot.compute.kubenova.io/web-1-img created" in capsys.readouterr().out
    assert len(fake.created) == 1


def test_the_wait_gives_up_at_its_deadline(fake, capsys):
    fake.life = [_snapshot(), _snapshot("InProgress")]
    assert kubectl_nova.main(["snapshot", "web-1", "web-1-img", "--timeout", "0"]) == 1
    assert "timed out after" in capsys.readouterr().err


def test_create_words_a_conflict_for_the_user(monkeypatch):
    class Custom:
        def create_namespaced_custom_object(self, *args, **kwargs):
            raise k8s_exceptions.ApiException(status=409, reason="Conflict")

    cluster = helpers.cluster("team")
    monkeypatch.setattr(type(cluster), "custom", property(lambda self: Custom()))
    with pytest.raises(kube.CommandError, match="web-1-img exists already in namespace team"):
        snapshot_verb.create(cluster, snapshot_verb.snapshot_body("web-1", "web-1-img", "uid-1"))


def test_a_missing_instance_is_an_error_and_nothing_is_created(fake, monkeypatch, capsys):
    missing = k8s_exceptions.ApiException(status=404, reason="Not Found")
    monkeypatch.setattr(kube, "get_instance", lambda cluster, name: (_ for _ in ()).throw(missing))
    assert kubectl_nova.main(["snapshot", "web-9", "web-9-img"]) == 1
    assert fake.created == []
    assert capsys.readouterr().err
