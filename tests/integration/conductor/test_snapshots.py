"""Snapshots through the conductor, on a real database: an InstanceSnapshot is checked against
the table of allowed states, swapped in (task image_snapshot), recorded as the action
createImage, cast to the host, and finished by the host's report with an Image that belongs to
nobody; refusals, failures, repeated answers, hosts that never answer, and instances deleted
before their snapshot ended."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor import snapshot_requests
from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.exception import PermanentFailure
from kubenova.rpc import compute_rpcapi, envelope, payloads
from tests.integration.conductor.fakes import instance_name, node_report, running_instance
from tests.support import NAMESPACE, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

SNAP_UID = "5a5a5a5a-0000-4000-8000-00000000000{}"
SHA = "c0ffee" + "0" * 58
T0 = dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC)


class FakeObjects:
    """The apiserver as the snapshot road sees it."""

    def __init__(self) -> None:
        self.instances: dict[str, str] = {}  # name -> uid
        self.images: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        uid = self.instances.get(name)
        return None if uid is None else {"metadata": {"name": name, "uid": uid}}

    def get_image(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.images.get(name))

    def get_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.snapshots.get(name))

    def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(s) for s in self.snapshots.values()]

    def create_image(self, body: dict[str, Any]) -> bool:
        if body["metadata"]["name"] in self.images:
            return False
        self.images[body["metadata"]["name"]] = copy.deepcopy(body)
        return True

    def patch_snapshot_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        if name not in self.snapshots:
            return False
        self.snapshots[name].setdefault("status", {}).update(copy.deepcopy(status))
        return True

    def post_event(
        self, obj: dict[str, Any], *, reason: str, message: str, type_: str = "Warning"
    ) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))

    # -- for the tests ---------------------------------------------------------------------

    def add_snapshot(self, name: str, instance: str, image: str, n: int = 1) -> None:
        self.snapshots[name] = {
            "apiVersion": "compute.kubenova.io/v1alpha1",
            "kind": "InstanceSnapshot",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "uid": SNAP_UID.format(n),
                "generation": 1,
            },
            "spec": {"instance": instance, "imageName": image},
        }

    def request(self, name: str) -> snapshot_requests.SnapshotRequest:
        obj = self.snapshots[name]
        return snapshot_requests.SnapshotRequest(
            namespace=NAMESPACE,
            name=name,
            uid=obj["metadata"]["uid"],
            generation=1,
            instance=obj["spec"]["instance"],
            image_name=obj["spec"]["imageName"],
            status=copy.deepcopy(obj.get("status") or {}),
        )

    def ready(self, name: str) -> dict[str, Any]:
        conditions = self.snapshots[name]["status"]["conditions"]
        found: dict[str, Any] = next(c for c in conditions if c["type"] == "Ready")
        return found


@pytest.fixture
def objects() -> FakeObjects:
    return FakeObjects()


@pytest.fixture
def conductor(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    objects: FakeObjects,
) -> Conductor:
    """The conductor of the other tests, with the fake apiserver of snapshots."""
    return Conductor.build(
        OperatorSettings(),
        db_session_factory,
        kube,  # type: ignore[arg-type]
        compute_rpcapi.ComputeAPI(caster),
        snapshot_objects=objects,
    )


@pytest.fixture
def uuid(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    objects: FakeObjects,
) -> str:
    """An instance running on h1, a host that is up, known to the fake apiserver."""
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.4")
    instance = running_instance(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        record = db_api.instance_lock(session, instance)
        assert record is not None
        image = {**record.image, "architecture": "x86_64", "hypervisor_type": "qemu"}
        db_api.instance_set(session, record, image=image)
    conductor.projector.project(instance)
    objects.instances[instance_name(instance)] = instance
    objects.add_snapshot("snap", instance_name(instance), "web-img")
    return instance


def _record(session_factory: db_engine.SessionFactory, uuid: str) -> models.Instance:
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        return record


def _report(cast_args: dict[str, Any], **overrides: Any) -> payloads.SnapshotFinished:
    values: dict[str, Any] = {
        "instance_uuid": cast_args["instance_uuid"],
        "host": "h1",
        "snapshot_name": cast_args["snapshot_name"],
        "snapshot_uid": cast_args["snapshot_uid"],
        "image_name": cast_args["image_name"],
        "result": "Success",
        "url": cast_args["upload_url"],
        "sha256": SHA,
        "size_bytes": 10485760,
        "started_at": T0,
        "finished_at": T0 + dt.timedelta(seconds=3),
        "vm_state": "active",
        "power_state": "running",
        "addresses": ("192.168.122.10",),
    }
    values.update(overrides)
    return payloads.SnapshotFinished(**values)


def _from_host(report: payloads.SnapshotFinished, request_id: str) -> envelope.Envelope:
    return envelope.Envelope(
        request_id=request_id,
        method="snapshot_finished",
        args=report.model_dump(mode="json"),
        sender="agent-h1",
        version="1.4",
    )


def _actions(kube: RecordingKube, conductor: Conductor) -> list[dict[str, Any]]:
    conductor.history.flush()
    return [a for a in kube.instance_actions.values() if a["action"] == "createImage"]


def test_a_snapshot_is_checked_swapped_recorded_cast_and_finished_with_an_image(
    db_session_factory, kube, caster: RecordingCaster, conductor: Conductor, objects, uuid
) -> None:
    caster.casts.clear()
    conductor.snapshots.create(objects.request("snap"))

    request_id = f"req-{SNAP_UID.format(1)}"
    assert [(c.topic, c.method, c.request_id) for c in caster.casts] == [
        ("compute.h1", "snapshot_instance", request_id)
    ]
    args = caster.casts[0].args
    assert args == {
        "instance_uuid": uuid,
        "snapshot_name": "snap",
        "snapshot_uid": SNAP_UID.format(1),
        "image_name": "web-img",
        "upload_url": f"http://127.0.0.1:8089/snapshots/{NAMESPACE}/snap-{SNAP_UID.format(1)}.qcow2",
    }
    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state) == ("active", "image_snapshot")
    assert kube.status_of(instance_name(uuid))["taskState"] == "image_snapshot"
    status = objects.snapshots["snap"]["status"]
    assert (status["phase"], status["host"], status["requestId"]) == (
        "InProgress",
        "h1",
        request_id,
    )
    assert objects.ready("snap")["status"] == "False"
    [action] = _actions(kube, conductor)
    assert action["result"] == "InProgress"

    conductor.manager.handle(_from_host(_report(args), request_id), "agent-h1")

    record = _record(db_session_factory, uuid)
    assert (record.vm_state, record.task_state, record.power_state) == ("active", None, "running")
    assert "taskState" not in kube.status_of(instance_name(uuid))
    image = objects.images["web-img"]
    assert "ownerReferences" not in image["metadata"]
    assert image["metadata"]["labels"] == {snapshot_requests.SNAPSHOT_OF_LABEL: instance_name(uuid)}
    assert image["spec"] == {
        "source": {"url": args["upload_url"]},
        "sha256": SHA,
        "diskFormat": "qcow2",
        "minDiskGiB": 1,
        "architecture": "x86_64",
        "hypervisorType": "qemu",
    }
    status = objects.snapshots["snap"]["status"]
    assert (status["phase"], status["sha256"], status["sizeBytes"]) == ("Succeeded", SHA, 10485760)
    assert status["imageName"] == "web-img"
    assert (objects.ready("snap")["status"], objects.ready("snap")["reason"]) == (
        "True",
        "Succeeded",
    )
    [action] = _actions(kube, conductor)
    assert action["result"] == "Success"
    assert [(e["event"], e["host"], e["result"]) for e in action["events"]] == [
        ("compute_snapshot_instance", "h1", "Success")
    ]
    assert objects.events == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"vm_state": "error"},
            "cannot snapshot: the instance is error; snapshot needs vm_state active or paused "
            "or stopped or suspended",
        ),
        ({"task_state": "rebooting"}, "cannot snapshot: the instance is busy (rebooting)"),
    ],
)
def test_a_snapshot_in_a_state_the_table_refuses_changes_nothing_but_its_status(
    db_session_factory, kube, caster, conductor, objects, uuid, values, message
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, uuid, **values)
    caster.casts.clear()

    conductor.snapshots.create(objects.request("snap"))

    assert caster.casts == []
    assert objects.snapshots["snap"]["status"]["phase"] == "Failed"
    ready = objects.ready("snap")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "InvalidState",
        message,
    )
    assert objects.events == [("snap", "InvalidState", message)]
    record = _record(db_session_factory, uuid)
    assert record.task_state == values.get("task_state")
    assert _actions(kube, conductor) == []


def test_a_snapshot_of_a_missing_instance_or_into_an_existing_image_is_refused(
    caster, conductor, objects, uuid
) -> None:
    objects.add_snapshot("of-nothing", "no-such-instance", "other-img", n=2)
    objects.images["taken"] = {"metadata": {"name": "taken"}, "spec": {"sha256": "1" * 64}}
    objects.add_snapshot("into-taken", instance_name(uuid), "taken", n=3)
    caster.casts.clear()

    conductor.snapshots.create(objects.request("of-nothing"))
    conductor.snapshots.create(objects.request("into-taken"))

    assert caster.casts == []
    assert objects.ready("of-nothing")["reason"] == "InstanceNotFound"
    assert objects.ready("into-taken")["reason"] == "ImageExists"
    assert objects.images["taken"]["spec"]["sha256"] == "1" * 64


def test_seeing_the_same_request_again_casts_nothing_more(caster, conductor, objects, uuid):
    request = objects.request("snap")  # as first seen: no status yet
    conductor.snapshots.create(request)
    conductor.snapshots.create(request)

    assert [c.method for c in caster.casts].count("snapshot_instance") == 1
    assert objects.snapshots["snap"]["status"]["phase"] == "InProgress"


def test_a_failed_snapshot_says_why_and_makes_no_image(
    db_session_factory, kube, caster, conductor, objects, uuid
) -> None:
    conductor.snapshots.create(objects.request("snap"))
    cast = next(c for c in caster.casts if c.method == "snapshot_instance")
    report = _report(
        cast.args,
        result="Error",
        message="qemu-img convert failed: no space",
        url=None,
        sha256=None,
    )

    conductor.snapshots.snapshot_finished(report, cast.request_id)

    assert objects.images == {}
    assert objects.snapshots["snap"]["status"]["phase"] == "Failed"
    ready = objects.ready("snap")
    assert ready["reason"] == "SnapshotFailed"
    assert ready["message"] == "on host h1: qemu-img convert failed: no space"
    assert _record(db_session_factory, uuid).task_state is None
    [action] = _actions(kube, conductor)
    assert action["result"] == "Error"


def test_a_second_answer_does_not_undo_the_first(
    db_session_factory, caster, conductor, objects, uuid
):
    conductor.snapshots.create(objects.request("snap"))
    cast = next(c for c in caster.casts if c.method == "snapshot_instance")
    conductor.snapshots.snapshot_finished(_report(cast.args), cast.request_id)
    again = _report(cast.args, result="Error", message="HTTP 409 exists", url=None, sha256=None)

    conductor.snapshots.snapshot_finished(again, cast.request_id)

    assert objects.snapshots["snap"]["status"]["phase"] == "Succeeded"
    assert objects.images["web-img"]["spec"]["sha256"] == SHA


def test_an_answer_from_another_host_is_refused(caster, conductor, objects, uuid):
    conductor.snapshots.create(objects.request("snap"))
    cast = next(c for c in caster.casts if c.method == "snapshot_instance")

    with pytest.raises(PermanentFailure, match="assigned to 'h1'"):
        conductor.snapshots.snapshot_finished(_report(cast.args, host="h2"), cast.request_id)
    assert objects.snapshots["snap"]["status"]["phase"] == "InProgress"


def test_a_snapshot_whose_host_never_answers_is_rolled_back(
    db_session_factory, kube, caster, conductor, objects, uuid
) -> None:
    conductor.snapshots.create(objects.request("snap"))
    conductor.snapshots.finish_stale(now=models.utcnow())  # within the timeout: nothing
    assert _record(db_session_factory, uuid).task_state == "image_snapshot"

    later = models.utcnow() + dt.timedelta(seconds=conductor.snapshots.timeout_s + 1)
    conductor.snapshots.finish_stale(now=later)

    assert _record(db_session_factory, uuid).task_state is None
    assert objects.snapshots["snap"]["status"]["phase"] == "Failed"
    message = objects.ready("snap")["message"]
    assert message.startswith("snapshot rolled back: host h1 did not answer within")
    [action] = _actions(kube, conductor)
    assert action["result"] == "Error"
    assert action["events"][-1]["event"] == "conductor_roll_back"
    # The host's late answer changes nothing.
    cast = next(c for c in caster.casts if c.method == "snapshot_instance")
    conductor.snapshots.snapshot_finished(_report(cast.args), cast.request_id)
    assert objects.images == {}
    assert objects.snapshots["snap"]["status"]["phase"] == "Failed"


def _deleted(ready: dict[str, Any], uuid: str) -> bool:
    return (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "InstanceDeleted",
        f"instance {instance_name(uuid)} was deleted during the snapshot; no Image is made",
    )


def test_a_snapshot_whose_instance_is_deleted_meanwhile_fails_when_its_host_answers(
    db_session_factory, kube, caster, conductor, objects, uuid
) -> None:
    conductor.snapshots.create(objects.request("snap"))
    cast = next(c for c in caster.casts if c.method == "snapshot_instance")
    assert conductor.tasks.delete_instance(uuid, "req-delete") is False

    # The host finishes the snapshot before the terminate (one lane per instance).
    conductor.manager.handle(_from_host(_report(cast.args), cast.request_id), "agent-h1")

    assert objects.images == {}
    assert objects.snapshots["snap"]["status"]["phase"] == "Failed"
    assert _deleted(objects.ready("snap"), uuid)
    assert [(name, reason) for name, reason, _ in objects.events] == [("snap", "InstanceDeleted")]
    [action] = _actions(kube, conductor)
    assert action["result"] == "Error"
    conductor.instances.instance_terminated(
        payloads.InstanceTerminated(instance_uuid=uuid, host="h1"), "req-delete"
    )
    conductor.snapshots.finish_stale(now=models.utcnow())  # nothing left to end
    assert len(objects.events) == 1


def test_a_snapshot_whose_instance_was_deleted_without_its_host_fails_at_the_next_sweep(
    db_session_factory, kube, caster, conductor, objects, uuid
) -> None:
    conductor.snapshots.create(objects.request("snap"))
    cast = next(c for c in caster.casts if c.method == "snapshot_instance")
    with db_engine.transaction(db_session_factory) as session:
        session.execute(  # the host's agent has been silent for an hour
            sa.update(models.Service)
            .where(models.Service.host == "h1")
            .values(last_seen_up=models.utcnow() - dt.timedelta(hours=1))
        )
    assert conductor.tasks.delete_instance(uuid, "req-delete") is True  # done without it
    assert objects.snapshots["snap"]["status"]["phase"] == "InProgress"

    conductor.snapshots.finish_stale(now=models.utcnow())  # well within the timeout

    assert objects.snapshots["snap"]["status"]["phase"] == "Failed"
    assert _deleted(objects.ready("snap"), uuid)
    [action] = _actions(kube, conductor)
    assert (action["result"], action["events"][-1]["event"]) == ("Error", "conductor_roll_back")
    # The host, back, answers the snapshot still in its queue: that changes nothing.
    conductor.snapshots.snapshot_finished(_report(cast.args), cast.request_id)
    conductor.snapshots.finish_stale(now=models.utcnow())
    assert objects.images == {}
    assert objects.snapshots["snap"]["status"]["phase"] == "Failed"
    assert len(objects.events) == 1
