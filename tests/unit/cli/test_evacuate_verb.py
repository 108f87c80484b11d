"""``kubectl nova evacuate``: the InstanceMigrations of type Evacuate it creates (for one
instance, or for every instance on a host), and the exit code and output of its wait, over a
fake of its API calls."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client as k8s_client

from kubenova.cli import evacuate, kube, kubectl_nova, request_object
from tests.unit.cli import helpers


def _evacuation(name="web-1-evacuation-x", phase=None, message=None, **status):
    obj: dict[str, Any] = {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "InstanceMigration",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
        "spec": {"instance": name.split("-evacuation")[0], "type": "Evacuate"},
        "status": dict(status),
    }
    if phase is not None:
        obj["status"]["phase"] = phase
    if message is not None:
        obj["status"]["message"] = message
    return obj


def _on(name, namespace, host, uid=None):
    obj = helpers.instance(name)
    obj["metadata"].update(namespace=namespace, uid=uid or f"uid-{name}")
    obj["status"]["host"] = host
    return obj


@pytest.fixture
def fake(monkeypatch):
    class Fake:
        created: list[Any] = []
        # Instance name -> the object's life after its create, the create's answer first.
        lives: dict[str, list[dict[str, Any]]] = {}
        listed: list[dict[str, Any]] = []
        listing: list[str] = []

    def create(cluster, plural, body):
        Fake.created.append((cluster.namespace, plural, copy.deepcopy(body)))
        return Fake.lives[body["spec"]["instance"]][0]

    def life_of(name):
        return Fake.lives[name.split("-evacuation")[0]]

    def watch(cluster, plural, name, resource_version, timeout_seconds):
        return iter([("MODIFIED", obj) for obj in life_of(name)[1:]])

    def list_namespaced(self, group, version, namespace, plural, **kwargs):
        Fake.listing.append(namespace)
        return {"items": [i for i in Fake.listed if i["metadata"]["namespace"] == namespace]}

    def list_cluster(self, group, version, plural, **kwargs):
        Fake.listing.append("*")
        return {"items": Fake.listed}

    monkeypatch.setattr(kube, "connect", lambda k, c, n: helpers.cluster(n or "default"))
    monkeypatch.setattr(kube, "get_instance", lambda cluster, name: helpers.instance(name))
    monkeypatch.setattr(request_object, "create", create)
    monkeypatch.setattr(request_object, "watch", watch)
    monkeypatch.setattr(request_object, "get", lambda cluster, plural, name: life_of(name)[-1])
    monkeypatch.setattr(
        k8s_client.CustomObjectsApi, "list_namespaced_custom_object", list_namespaced
    )
    monkeypatch.setattr(k8s_client.CustomObjectsApi, "list_cluster_custom_object", list_cluster)
    return Fake


def test_it_creates_an_owned_evacuation_to_the_target_asked_for_and_waits(fake, capsys):
    fake.lives = {
        "web-1": [
            _evacuation(),
            _evacuation(phase="Running", sourceHost="h1"),
            _evacuation(phase="Succeeded", sourceHost="h1", targetHost="h2"),
        ]
    }
    assert kubectl_nova.main(["evacuate", "web-1", "--target", "h2", "-n", "prod"]) == 0

    namespace, plural, body = fake.created[0]
    assert (namespace, plural, body["kind"]) == ("prod", "instancemigrations", "InstanceMigration")
    assert body["spec"] == {"instance": "web-1", "type": "Evacuate", "targetHost": "h2"}
    assert body["metadata"]["name"].startswith("web-1-evacuation-")
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    out = capsys.readouterr().out
    assert "web-1-evacuation-x: Running" in out
    assert "instance web-1 rebuilt on h2 (its host h1 is down)" in out


def test_a_refusal_while_the_host_is_up_exits_1_with_its_reason(fake, capsys):
    refusal = "cannot evacuate: its host h1 is up (only the instances of a host that is down...)"
    fake.lives = {"web-1": [_evacuation(), _evacuation(phase="Failed", message=refusal)]}

    assert kubectl_nova.main(["evacuate", "web-1"]) == 1

    assert "targetHost" not in fake.created[0][2]["spec"]
    assert f"error: evacuation of instance web-1 failed: {refusal}" in capsys.readouterr().err


def test_host_evacuates_every_instance_the_namespace_records_on_that_host(fake, capsys):
    fake.listed = [
        _on("web-1", "default", "h1"),
        _on("web-2", "default", "h2"),
        _on("db-1", "default", "h1"),
        _on("other", "prod", "h1"),
    ]
    fake.lives = {
        "web-1": [_evacuation(), _evacuation(phase="Succeeded", targetHost="h3")],
        "db-1": [
            _evacuation("db-1-evacuation-x"),
            _evacuation("db-1-evacuation-x", phase="Failed", message="cannot evacuate: no room"),
        ],
    }

    assert kubectl_nova.main(["evacuate", "--host", "h1", "--target", "h3"]) == 1

    assert fake.listing == ["default"]
    assert [(ns, body["spec"]["instance"]) for ns, _, body in fake.created] == [
        ("default", "db-1"),
        ("default", "web-1"),
    ]
    assert [body["spec"]["targetHost"] for _, _, body in fake.created] == ["h3", "h3"]
    assert fake.created[0][2]["metadata"]["ownerReferences"][0]["uid"] == "uid-db-1"
    captured = capsys.readouterr()
    assert "instance web-1 rebuilt on h3" in captured.out
    assert "error: evacuation of instance db-1 failed: cannot evacuate: no room" in captured.err


def test_all_namespaces_creates_each_evacuation_in_its_instances_namespace(fake):
    fake.listed = [_on("web-1", "default", "h1"), _on("other", "prod", "h1")]
    fake.lives = {"web-1": [_evacuation()], "other": [_evacuation("other-evacuation-x")]}

    assert kubectl_nova.main(["evacuate", "--host", "h1", "-A", "--no-wait"]) == 0

    assert fake.listing == ["*"]
    assert [(ns, body["spec"]["instance"]) for ns, _, body in fake.created] == [
        ("default", "web-1"),
        ("prod", "other"),
    ]


def test_a_host_with_no_instances_creates_nothing(fake, capsys):
    fake.listed = [_on("web-2", "default", "h2")]

    assert kubectl_nova.main(["evacuate", "--host", "h1"]) == 0

    assert fake.created == []
    assert "no instances are recorded on host h1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["evacuate"], ["evacuate", "web-1", "--host", "h1"], ["evacuate", "web-1", "-A"]],
)
def test_name_and_host_are_one_or_the_other(fake, argv):
    with pytest.raises(SystemExit) as exited:
        kubectl_nova.main(argv)
    assert exited.value.code == 2
    assert fake.created == []


def test_the_body_names_the_instance_and_the_type(fake) -> None:
    import datetime as dt

    body = evacuate.evacuation_body(
        "web-1", "u", None, dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    )
    assert body["metadata"]["name"] == "web-1-evacuation-20260102030405"
    assert body["spec"] == {"instance": "web-1", "type": "Evacuate"}
