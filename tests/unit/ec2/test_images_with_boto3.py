"""CreateImage through the real boto3 against the in-process server: the InstanceSnapshot that
`kubectl nova snapshot` makes, an image pending and then available under the id CreateImage
answered (the Image made as the conductor makes it), a failed one, and EC2's refusals."""

from __future__ import annotations

import datetime

import pytest
from botocore.exceptions import ClientError, WaiterError

from kubenova.cli import snapshot as snapshot_verb
from kubenova.conductor import snapshot_requests
from kubenova.db import models
from kubenova.ec2 import actions_images, errors, ids
from kubenova.rpc import payloads
from tests.unit.ec2 import fakes, serving


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _operator_makes_the_image(objects, namespace, name):
    """The end of a snapshot that worked, as the conductor ends it: the Image of its
    ``image_body`` (with the InstanceSnapshot's description), admitted by the Images CRD, then
    the InstanceSnapshot Succeeded."""
    snapshot = objects.snapshot_objects[(namespace, name)]
    instance = objects.instance_objects[(namespace, snapshot["spec"]["instance"])]
    uid = snapshot["metadata"]["uid"]
    now = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    report = payloads.SnapshotFinished(
        instance_uuid=instance["metadata"]["uid"],
        host="h1",
        snapshot_name=name,
        snapshot_uid=uid,
        image_name=snapshot["spec"]["imageName"],
        result="Success",
        url=f"http://images/snapshots/{namespace}/{name}-{uid}.qcow2",
        sha256="ab" * 32,
        size_bytes=1024,
        started_at=now,
        finished_at=now,
        vm_state="active",
        power_state="running",
    )
    record = models.Instance(
        uuid=instance["metadata"]["uid"],
        name=instance["metadata"]["name"],
        namespace=namespace,
        flavor={"name": "m1.tiny", "disk_gib": 1},
        image={"name": "cirros", "architecture": "x86_64"},
    )
    body = snapshot_requests.image_body(report, record, snapshot["spec"].get("description"))
    objects.add_image(body)
    snapshot["status"] = {"phase": "Succeeded", "imageName": body["metadata"]["name"]}


def _fail(objects, namespace, name, reason, message):
    objects.snapshot_objects[(namespace, name)]["status"] = {
        "phase": "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": reason, "message": message}],
    }


def test_create_image_asks_for_what_kubectl_nova_snapshot_asks_for(ec2, objects):
    made = objects.add_instance("team-a", "web-1")
    answer = ec2.create_image(
        InstanceId=ids.instance_id(made), Name="web-1-monday", Description="before the upgrade"
    )
    assert ids.well_formed(answer["ImageId"], ids.IMAGE_PREFIX)
    [(key, snapshot)] = objects.snapshot_objects.items()
    assert key == ("team-a", "web-1-monday")
    plugin = snapshot_verb.snapshot_body("web-1", "web-1-monday", made["metadata"]["uid"])
    assert snapshot["metadata"]["ownerReferences"] == plugin["metadata"]["ownerReferences"]
    assert snapshot["spec"] == {**plugin["spec"], "description": "before the upgrade"}
    assert answer["ImageId"] == ids.snapshot_image_id(snapshot)


def test_the_image_is_pending_then_available_under_the_id_create_image_gave(
    ec2, objects, monkeypatch
):
    objects.add_instance("team-a", "web-1", phase="Stopped", powerState="Stopped")
    instance_id = ec2.describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]
    image_id = ec2.create_image(
        InstanceId=instance_id, Name="web-1.v2", Description="web, v2", NoReboot=False
    )["ImageId"]
    [pending] = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert (pending["State"], pending["Name"], pending["Description"]) == (
        "pending",
        "web-1.v2",
        "web, v2",
    )
    ec2.get_waiter("image_exists").wait(ImageIds=[image_id])

    # The operator makes the Image while boto3's waiter polls.
    reads = []
    read = objects.instance_snapshots

    def reading(namespace):
        reads.append(namespace)
        if len(reads) == 2:
            _operator_makes_the_image(objects, "team-a", "web-1.v2")
        return read(namespace)

    monkeypatch.setattr(objects, "instance_snapshots", reading)
    ec2.get_waiter("image_available").wait(
        ImageIds=[image_id], WaiterConfig={"Delay": 0, "MaxAttempts": 5}
    )
    [available] = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert (available["State"], available["Name"], available["Description"]) == (
        "available",
        "web-1.v2",
        "web, v2",
    )
    assert available["ImageLocation"].startswith("http://images/snapshots/team-a/web-1.v2-")
    # The Image has a uid of its own; the id is the InstanceSnapshot's still, and it boots.
    image = objects.image_objects["web-1.v2"]
    assert ids.derive(ids.IMAGE_PREFIX, image["metadata"]["uid"]) != image_id
    [instance] = ec2.run_instances(
        ImageId=image_id, InstanceType="m1.tiny", MinCount=1, MaxCount=1
    )["Instances"]
    assert instance["ImageId"] == image_id
    made = [o for (ns, n), o in objects.instance_objects.items() if n.startswith("ec2-")]
    assert made[0]["spec"]["image"] == "web-1.v2"


def test_the_image_shows_once_made_even_before_its_snapshot_says_so(ec2, objects):
    made = objects.add_instance("team-a", "web-1")
    image_id = ec2.create_image(InstanceId=ids.instance_id(made), Name="golden")["ImageId"]
    _operator_makes_the_image(objects, "team-a", "golden")
    # The conductor creates the Image, then writes the InstanceSnapshot's status.
    objects.snapshot_objects[("team-a", "golden")]["status"] = {"phase": "InProgress"}
    [image] = [i for i in ec2.describe_images()["Images"] if i["ImageId"] == image_id]
    assert image["State"] == "available"


def test_another_namespace_sees_the_image_once_it_is_an_image(objects):
    made = objects.add_instance("team-a", "web-1")
    with (
        serving.served(objects) as endpoint,
        serving.client(endpoint) as ours,
        serving.client(endpoint, serving.TEAM_B) as theirs,
    ):
        image_id = ours.create_image(InstanceId=ids.instance_id(made), Name="golden")["ImageId"]
        assert image_id not in [i["ImageId"] for i in theirs.describe_images()["Images"]]
        assert serving.code(theirs.describe_images, ImageIds=[image_id]) == (
            "InvalidAMIID.NotFound"
        )
        _operator_makes_the_image(objects, "team-a", "golden")
        [seen] = theirs.describe_images(ImageIds=[image_id])["Images"]
        assert seen["State"] == "available"


def test_a_failed_snapshot_is_a_failed_image_that_stops_the_waiter(ec2, objects):
    made = objects.add_instance("team-a", "web-1")
    image_id = ec2.create_image(InstanceId=ids.instance_id(made), Name="broken")["ImageId"]
    _fail(objects, "team-a", "broken", "SnapshotFailed", "on host h1: disk full")
    [failed] = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert failed["State"] == "failed"
    assert failed["StateReason"] == {"Code": "SnapshotFailed", "Message": "on host h1: disk full"}
    with pytest.raises(WaiterError) as stopped:
        ec2.get_waiter("image_available").wait(
            ImageIds=[image_id], WaiterConfig={"Delay": 0, "MaxAttempts": 3}
        )
    assert "failure state" in str(stopped.value)


def test_running_a_pending_image_is_unavailable_and_a_failed_one_not_found(objects):
    made = objects.add_instance("team-a", "web-1")
    with (
        serving.served(objects) as endpoint,
        serving.client(endpoint) as ec2,
        serving.client(endpoint, serving.TEAM_B) as other,
    ):
        image_id = ec2.create_image(InstanceId=ids.instance_id(made), Name="golden")["ImageId"]
        launch = {"ImageId": image_id, "InstanceType": "m1.tiny", "MinCount": 1, "MaxCount": 1}
        for phase in (None, "InProgress"):
            if phase:
                objects.snapshot_objects[("team-a", "golden")]["status"] = {"phase": phase}
            with pytest.raises(ClientError) as refused:
                ec2.run_instances(**launch)
            error = refused.value.response["Error"]
            assert error["Code"] == "InvalidAMIID.Unavailable"
            assert error["Message"].startswith(f"AMI '{image_id}' is pending, and cannot be run")
        # Another namespace does not see the image until it is an Image.
        assert serving.code(other.run_instances, **launch) == "InvalidAMIID.NotFound"
        _fail(objects, "team-a", "golden", "SnapshotFailed", "on host h1: disk full")
        assert serving.code(ec2.run_instances, **launch) == "InvalidAMIID.NotFound"
    assert list(objects.instance_objects) == [("team-a", "web-1")]


@pytest.mark.parametrize(
    "name",
    [
        "x" * 129,  # EC2: at most 128 characters (boto3 itself refuses fewer than 3)
        "web*1",  # a character EC2 refuses
        "Web Server (v1)",  # EC2 takes it; an Image cannot be named so
        "-web",
        "web.",
    ],
)
def test_a_name_ec2_or_an_image_cannot_take_is_malformed(ec2, objects, name):
    made = objects.add_instance("team-a", "web-1")
    refused = serving.code(ec2.create_image, InstanceId=ids.instance_id(made), Name=name)
    assert refused == "InvalidAMIName.Malformed"
    assert objects.snapshot_objects == {}


def test_a_name_shorter_than_ec2s_three_characters_is_malformed():
    # What boto3 never sends, other clients may.
    with pytest.raises(errors.Ec2Error) as refused:
        actions_images.require_name("ab")
    assert refused.value.code == "InvalidAMIName.Malformed"
    actions_images.require_name("abc")


def test_a_name_an_image_has_or_is_about_to_have_is_a_duplicate(objects):
    ours = objects.add_instance("team-a", "web-1")
    theirs = objects.add_instance("team-b", "db-1")
    with (
        serving.served(objects) as endpoint,
        serving.client(endpoint) as ec2,
        serving.client(endpoint, serving.TEAM_B) as other,
    ):
        instance_id = ids.instance_id(ours)
        assert serving.code(ec2.create_image, InstanceId=instance_id, Name="cirros") == (
            "InvalidAMIName.Duplicate"
        )
        # Another namespace's snapshot under way will make an Image of that name.
        other.create_image(InstanceId=ids.instance_id(theirs), Name="shared")
        assert serving.code(ec2.create_image, InstanceId=instance_id, Name="shared") == (
            "InvalidAMIName.Duplicate"
        )
        # Once it has failed, the name is free for another namespace.
        _fail(objects, "team-b", "shared", "InvalidState", "cannot snapshot")
        ec2.create_image(InstanceId=instance_id, Name="shared")
        # The namespace's own InstanceSnapshot holds the name, whatever became of it.
        _fail(objects, "team-a", "shared", "SnapshotFailed", "disk full")
        with pytest.raises(ClientError) as refused:
            ec2.create_image(InstanceId=instance_id, Name="shared")
        error = refused.value.response["Error"]
        assert error["Code"] == "InvalidAMIName.Duplicate"
        assert "delete it" in error["Message"]
    assert sorted(objects.snapshot_objects) == [("team-a", "shared"), ("team-b", "shared")]


def test_the_same_name_again_is_a_duplicate_while_the_first_snapshot_busies_the_instance(
    ec2, objects
):
    made = objects.add_instance("team-a", "web-1")
    instance_id = ids.instance_id(made)
    ec2.create_image(InstanceId=instance_id, Name="img")
    # The operator has begun the snapshot: the instance is busy, but the name is what a second
    # CreateImage of that name is refused for, whenever it comes.
    made["status"]["taskState"] = "image_snapshot"
    assert serving.code(ec2.create_image, InstanceId=instance_id, Name="img") == (
        "InvalidAMIName.Duplicate"
    )
    assert serving.code(ec2.create_image, InstanceId=instance_id, Name="other") == (
        "IncorrectInstanceState"
    )
    assert sorted(objects.snapshot_objects) == [("team-a", "img")]


def test_unknown_or_malformed_instances_are_refused(ec2, objects):
    theirs = objects.add_instance("team-b", "theirs")
    assert serving.code(ec2.create_image, InstanceId="web-1", Name="img") == (
        "InvalidInstanceID.Malformed"
    )
    assert serving.code(ec2.create_image, InstanceId="i-0123456789abcdef0", Name="img") == (
        "InvalidInstanceID.NotFound"
    )
    assert serving.code(ec2.create_image, InstanceId=ids.instance_id(theirs), Name="img") == (
        "InvalidInstanceID.NotFound"
    )
    assert objects.snapshot_objects == {}


@pytest.mark.parametrize(
    ("phase", "spec", "status"),
    [
        ("Running", {}, {}),
        ("Stopped", {"powerState": "Stopped"}, {}),
        # EC2 shows paused and suspended guests as stopped; Nova snapshots them as they are.
        ("Paused", {"powerState": "Paused"}, {}),
        ("Suspended", {"powerState": "Suspended"}, {}),
    ],
)
def test_running_and_stopped_instances_are_snapshotted(ec2, objects, phase, spec, status):
    made = objects.add_instance("team-a", "web-1", phase=phase, **spec)
    made["status"].update(status)
    assert ec2.create_image(InstanceId=ids.instance_id(made), Name="img")["ImageId"]


@pytest.mark.parametrize(
    ("phase", "spec", "status", "deleting"),
    [
        ("Building", {}, {}, False),
        (None, {}, {}, False),
        ("Error", {}, {}, False),
        ("Running", {"powerState": "Stopped"}, {}, False),  # stopping
        ("Running", {}, {"taskState": "rebooting"}, False),
        ("Stopped", {"powerState": "Stopped"}, {"taskState": "resize_migrating"}, False),
        ("VerifyResize", {}, {"powerState": "running"}, False),
        ("Unknown", {}, {}, False),  # its host is down
        ("Running", {}, {}, True),
    ],
)
def test_states_a_snapshot_is_not_taken_in_are_refused(ec2, objects, phase, spec, status, deleting):
    made = objects.add_instance("team-a", "web-1", phase=phase, **spec)
    made.setdefault("status", {}).update(status)
    if deleting:
        made["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    refused = serving.code(ec2.create_image, InstanceId=ids.instance_id(made), Name="img")
    assert refused == "IncorrectInstanceState"
    assert objects.snapshot_objects == {}


def test_tag_specifications_tag_the_image_from_pending_to_available(ec2, objects):
    made = objects.add_instance("team-a", "web-1")
    spec = [{"ResourceType": "image", "Tags": [{"Key": "role", "Value": "web server"}]}]
    image_id = ec2.create_image(
        InstanceId=ids.instance_id(made), Name="tagged", TagSpecifications=spec
    )["ImageId"]
    expected = [{"Key": "role", "Value": "web server"}]
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["Tags"] == expected
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": "stage", "Value": "pending"}])
    _operator_makes_the_image(objects, "team-a", "tagged")
    [available] = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert available["State"] == "available"
    assert available["Tags"] == [*expected, {"Key": "stage", "Value": "pending"}]


def test_what_a_snapshot_does_not_make_is_refused_by_name(ec2, objects):
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    volumes = [{"ResourceType": "snapshot", "Tags": [{"Key": "a", "Value": "b"}]}]
    for extra in (
        {"TagSpecifications": volumes},
        {"BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "NoDevice": ""}]},
        {"Description": "d" * 256},
    ):
        refused = serving.code(ec2.create_image, InstanceId=instance_id, Name="img", **extra)
        assert refused == "InvalidParameterValue"
    assert serving.code(ec2.create_image, InstanceId=instance_id, Name="img", DryRun=True) == (
        "DryRunOperation"
    )
    assert objects.snapshot_objects == {}
