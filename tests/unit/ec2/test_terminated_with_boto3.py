"""Terminated instances stay visible for a while, as on EC2: the server in this process, driven
by the real boto3, over a FakeCluster whose Instances the database records as the conductor
does (``instance_insert``) and soft-deletes when they are deleted (``instance_soft_delete``),
in a real SQLite database made from the project's models."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from botocore.exceptions import WaiterError

from kubenova.db import deleted_instances, models
from kubenova.db import engine as db_engine
from kubenova.db import instances as db_instances
from kubenova.ec2 import ids, settings, terminated
from tests.unit.ec2 import fakes
from tests.unit.ec2.serving import TEAM_B, client, code, served

_INSTANCES = models.table(models.Instance)
_NO_WAIT = {"Delay": 1, "MaxAttempts": 2}


class RecordedCluster(fakes.FakeCluster):
    """Instances recorded in the database as the operator records them: a row when one is
    made, soft-deleted before the object goes (the finalizer's order)."""

    def __init__(self, session_factory: db_engine.SessionFactory) -> None:
        super().__init__()
        self.session_factory = session_factory

    def create_instance(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        made = super().create_instance(namespace, body)
        self.record(made, namespace)
        return made

    def add_instance(
        self, namespace: str, name: str, phase: str | None = "Running", **spec: Any
    ) -> dict[str, Any]:
        made = super().add_instance(namespace, name, phase, **spec)
        self.record(made, namespace)
        return made

    def delete_instance(self, namespace: str, name: str, uid: str) -> bool:
        self.soft_delete(uid)
        return super().delete_instance(namespace, name, uid)

    def record(self, made: dict[str, Any], namespace: str) -> None:
        spec = made["spec"]
        with db_engine.transaction(self.session_factory) as session:
            db_instances.instance_insert(
                session,
                uuid=made["metadata"]["uid"],
                name=made["metadata"]["name"],
                namespace=namespace,
                hostname=made["metadata"]["name"],
                flavor={"name": spec["flavor"], "vcpus": 1},
                image={"name": spec["image"]},
                user_data_b64=None,
                ssh_keys=None,
                request_id=None,
                generation=1,
                availability_zone=spec.get("availabilityZone"),
            )
            # The conductor records an instance as it is made; the fake's objects are dated
            # on a clock of their own, which the record follows.
            created = datetime.datetime.fromisoformat(made["metadata"]["creationTimestamp"])
            session.execute(
                _INSTANCES.update()
                .where(_INSTANCES.c.uuid == made["metadata"]["uid"])
                .values(created_at=created)
            )

    def soft_delete(self, uid: str) -> None:
        with db_engine.transaction(self.session_factory) as session:
            db_instances.instance_soft_delete(session, uid)

    def deleted_ago(self, uid: str, seconds: int) -> None:
        """Move the record's deletion ``seconds`` into the past."""
        moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
        with db_engine.transaction(self.session_factory) as session:
            session.execute(
                _INSTANCES.update().where(_INSTANCES.c.uuid == uid).values(deleted_at=moment)
            )


@pytest.fixture
def session_factory(tmp_path) -> Iterator[db_engine.SessionFactory]:
    # A file, not memory: the server answers from its own threads, each with a connection.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'nova.db'}")
    models.Base.metadata.create_all(engine)
    try:
        yield db_engine.make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def objects(session_factory) -> RecordedCluster:
    return RecordedCluster(session_factory)


@pytest.fixture
def ec2(objects, session_factory) -> Iterator[Any]:
    with (
        served(objects, terminated.RecentlyTerminated(session_factory)) as endpoint,
        client(endpoint) as boto,
    ):
        yield boto


def _run(ec2: Any, objects: RecordedCluster, count: int = 1, **extra: Any) -> list[str]:
    image = ids.image_id(objects.image_objects["cirros"])
    made = ec2.run_instances(
        ImageId=image, InstanceType="m1.tiny", MinCount=count, MaxCount=count, **extra
    )
    return [instance["InstanceId"] for instance in made["Instances"]]


def _described(ec2: Any, **params: Any) -> dict[str, dict[str, Any]]:
    reservations = ec2.describe_instances(**params)["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def test_a_terminated_instance_shows_terminated_after_its_object_is_gone(ec2, objects) -> None:
    first, second = _run(ec2, objects, count=2)
    reservation = ec2.describe_instances(InstanceIds=[second])["Reservations"][0]

    changes = ec2.terminate_instances(InstanceIds=[second])["TerminatingInstances"]

    assert changes[0]["CurrentState"] == {"Code": 32, "Name": "shutting-down"}
    assert len(objects.instance_objects) == 1  # its object is gone
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[second], WaiterConfig=_NO_WAIT)
    described = ec2.describe_instances(InstanceIds=[second])["Reservations"]
    assert [r["ReservationId"] for r in described] == [reservation["ReservationId"]]
    (gone,) = described[0]["Instances"]
    assert gone["State"] == {"Code": 48, "Name": "terminated"}
    assert gone["InstanceType"] == "m1.tiny"
    assert gone["ImageId"] == ids.image_id(objects.image_objects["cirros"])
    assert gone["Placement"]["AvailabilityZone"] == "nova"  # the default zone: none asked for
    assert gone["AmiLaunchIndex"] == 1
    assert gone["StateReason"] == {
        "Code": "Client.UserInitiatedShutdown",
        "Message": "Client.UserInitiatedShutdown: User initiated shutdown",
    }
    assert gone["StateTransitionReason"].startswith("User initiated (")
    # The other instance of the reservation is still there, and both are listed.
    assert set(_described(ec2)) == {first, second}


def test_without_a_database_the_waiter_cannot_see_it_terminated(objects) -> None:
    with served(objects) as endpoint, client(endpoint) as ec2:
        (instance,) = _run(ec2, objects)
        ec2.terminate_instances(InstanceIds=[instance])
        assert code(ec2.describe_instances, InstanceIds=[instance]) == (
            "InvalidInstanceID.NotFound"
        )
        with pytest.raises(WaiterError):
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=[instance], WaiterConfig=_NO_WAIT
            )


def test_filters_and_pages_apply_to_terminated_instances(ec2, objects) -> None:
    made = _run(ec2, objects, count=6)
    gone = made[1:4]
    ec2.terminate_instances(InstanceIds=gone)

    by_state = _described(ec2, Filters=[{"Name": "instance-state-name", "Values": ["terminated"]}])
    assert sorted(by_state) == sorted(gone)
    by_code = _described(ec2, Filters=[{"Name": "instance-state-code", "Values": ["48"]}])
    assert sorted(by_code) == sorted(gone)
    live = _described(ec2, Filters=[{"Name": "instance-state-name", "Values": ["pending"]}])
    assert sorted(live) == sorted(set(made) - set(gone))
    typed = _described(
        ec2,
        Filters=[
            {"Name": "instance-type", "Values": ["m1.tiny"]},
            {"Name": "instance-id", "Values": [gone[0], made[0]]},
        ],
    )
    assert sorted(typed) == sorted([gone[0], made[0]])
    assert _described(ec2, Filters=[{"Name": "availability-zone", "Values": ["az-9"]}]) == {}
    pages = ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
    listed = [
        i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]
    ]
    # Every one once, in the order they were made, terminated or not.
    assert listed == made


def test_a_live_object_wins_over_its_deleted_record(ec2, objects) -> None:
    made = objects.add_instance("team-a", "web-1")
    instance = ids.instance_id(made)
    # The operator deletes the record first; the object waits for its finalizer.
    objects.soft_delete(made["metadata"]["uid"])
    objects.instance_objects[("team-a", "web-1")]["metadata"]["deletionTimestamp"] = "2026-01-01"

    (shown,) = _described(ec2).values()

    assert shown["InstanceId"] == instance
    assert shown["State"] == {"Code": 32, "Name": "shutting-down"}
    assert shown["PrivateDnsName"] == "web-1"
    with pytest.raises(WaiterError):
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[instance], WaiterConfig=_NO_WAIT)


def test_one_terminated_longer_ago_than_the_window_is_not_shown(ec2, objects) -> None:
    old, recent = (objects.add_instance("team-a", name) for name in ("old", "recent"))
    for made in (old, recent):
        ec2.terminate_instances(InstanceIds=[ids.instance_id(made)])
    objects.deleted_ago(old["metadata"]["uid"], 3601)
    objects.deleted_ago(recent["metadata"]["uid"], 3500)

    assert list(_described(ec2)) == [ids.instance_id(recent)]
    assert code(ec2.describe_instances, InstanceIds=[ids.instance_id(old)]) == (
        "InvalidInstanceID.NotFound"
    )
    assert code(ec2.terminate_instances, InstanceIds=[ids.instance_id(old)]) == (
        "InvalidInstanceID.NotFound"
    )


def test_the_window_is_the_servers_setting(objects, session_factory) -> None:
    made = objects.add_instance("team-a", "web-1")
    objects.soft_delete(made["metadata"]["uid"])
    del objects.instance_objects[("team-a", "web-1")]
    objects.deleted_ago(made["metadata"]["uid"], 120)
    for window, shown in ((60, []), (180, [ids.instance_id(made)]), (0, [])):
        reader = terminated.RecentlyTerminated(session_factory, window)
        with served(objects, reader) as endpoint, client(endpoint) as ec2:
            assert list(_described(ec2)) == shown, window


def test_another_namespaces_terminated_instances_are_never_shown(ec2, objects) -> None:
    theirs = objects.add_instance("team-b", "theirs")
    objects.soft_delete(theirs["metadata"]["uid"])
    del objects.instance_objects[("team-b", "theirs")]
    instance = ids.instance_id(theirs)

    assert _described(ec2) == {}
    assert code(ec2.describe_instances, InstanceIds=[instance]) == "InvalidInstanceID.NotFound"
    assert code(ec2.terminate_instances, InstanceIds=[instance]) == "InvalidInstanceID.NotFound"
    statuses = ec2.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
    assert statuses == []
    # The namespace it belongs to does see it.
    reader = terminated.RecentlyTerminated(objects.session_factory)
    with served(objects, reader) as endpoint, client(endpoint, TEAM_B) as theirs_ec2:
        assert list(_described(theirs_ec2)) == [instance]


def test_terminating_a_terminated_instance_answers_terminated_twice(ec2, objects) -> None:
    (instance,) = _run(ec2, objects)
    ec2.terminate_instances(InstanceIds=[instance])

    again = ec2.terminate_instances(InstanceIds=[instance])["TerminatingInstances"]

    assert again == [
        {
            "InstanceId": instance,
            "PreviousState": {"Code": 48, "Name": "terminated"},
            "CurrentState": {"Code": 48, "Name": "terminated"},
        }
    ]


def test_instance_status_shows_terminated_ones_only_when_all_are_asked_for(ec2, objects) -> None:
    running = ids.instance_id(objects.add_instance("team-a", "up"))
    gone = ids.instance_id(objects.add_instance("team-a", "gone", availabilityZone="az-2"))
    ec2.terminate_instances(InstanceIds=[gone])

    default = ec2.describe_instance_status()["InstanceStatuses"]
    assert [s["InstanceId"] for s in default] == [running]
    assert ec2.describe_instance_status(InstanceIds=[gone])["InstanceStatuses"] == []
    every = ec2.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
    assert [s["InstanceId"] for s in every] == [running, gone]
    assert every[1]["InstanceState"] == {"Code": 48, "Name": "terminated"}
    assert every[1]["InstanceStatus"] == {"Status": "not-applicable"}
    assert every[1]["AvailabilityZone"] == "az-2"
    by_id = ec2.describe_instance_status(InstanceIds=[gone], IncludeAllInstances=True)
    assert [s["InstanceId"] for s in by_id["InstanceStatuses"]] == [gone]
    filtered = ec2.describe_instance_status(
        IncludeAllInstances=True,
        Filters=[{"Name": "instance-state-name", "Values": ["terminated"]}],
    )
    assert [s["InstanceId"] for s in filtered["InstanceStatuses"]] == [gone]


def test_other_actions_on_a_terminated_instance_are_refused_but_a_reboot_is_ignored(
    ec2, objects
) -> None:
    (instance,) = _run(ec2, objects)
    ec2.terminate_instances(InstanceIds=[instance])

    assert code(ec2.get_console_output, InstanceId=instance) == "IncorrectInstanceState"
    assert code(ec2.stop_instances, InstanceIds=[instance]) == "IncorrectInstanceState"
    assert code(ec2.start_instances, InstanceIds=[instance]) == "IncorrectInstanceState"
    assert code(ec2.create_image, InstanceId=instance, Name="from-gone") == (
        "IncorrectInstanceState"
    )
    ec2.reboot_instances(InstanceIds=[instance])  # EC2 ignores it
    assert objects.snapshot_objects == {}


def test_the_query_reads_one_namespaces_deleted_rows_latest_first(objects, session_factory) -> None:
    made = [objects.add_instance("team-a", f"web-{i}") for i in range(3)]
    kept = objects.add_instance("team-a", "live")
    for index, obj in enumerate(made):
        objects.soft_delete(obj["metadata"]["uid"])
        objects.deleted_ago(obj["metadata"]["uid"], 10 * (index + 1))
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=25)

    with session_factory() as session:
        found = deleted_instances.recently_deleted(session, "team-a", since, limit=10)
        limited = deleted_instances.recently_deleted(session, "team-a", since, limit=1)
        elsewhere = deleted_instances.recently_deleted(session, "team-b", since, limit=10)

    assert [record.name for record in found] == ["web-0", "web-1"]
    assert [record.name for record in limited] == ["web-0"]
    assert elsewhere == []
    assert kept["metadata"]["uid"] not in {record.uuid for record in found}
    assert found[0].flavor_name == "m1.tiny"
    assert found[0].image_name == "cirros"
    with pytest.raises(ValueError, match="limit must be at least 1"):
        deleted_instances.recently_deleted(session_factory(), "team-a", since, limit=0)


def test_settings_read_the_database_and_the_window_and_never_show_the_url() -> None:
    url = "mysql+pymysql://ec2:s3cret@db:3306/nova"
    config = settings.Ec2Settings.from_env(
        {"KUBENOVA_DB_URL": url, "KUBENOVA_EC2_TERMINATED_VISIBLE_S": "600"}
    )
    assert config.database_url == url
    assert config.terminated_visible_s == 600
    assert "s3cret" not in repr(config)
    default = settings.Ec2Settings.from_env({})
    assert (default.database_url, default.terminated_visible_s) == ("", 3600)
    for bad, reason in (("-1", "0 or more"), ("an hour", "whole number")):
        with pytest.raises(ValueError, match=f"KUBENOVA_EC2_TERMINATED_VISIBLE_S.*{reason}"):
            settings.Ec2Settings.from_env({"KUBENOVA_EC2_TERMINATED_VISIBLE_S": bad})
