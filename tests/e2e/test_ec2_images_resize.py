"""CreateImage and ModifyInstanceAttribute of the EC2 API on the real stack: boto3 against
``kubenova-ec2-api``, the operator and agent booting the tiny guest on this host's libvirtd.

CreateImage makes an InstanceSnapshot; the AMI id it answers holds from ``pending`` until the
Image exists and boto3's ``image_available`` waiter returns, and an instance boots from it.
ModifyInstanceAttribute's InstanceType resizes a stopped instance and confirms the resize with
no further call from the client, as an EC2 client expects.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e import test_ec2_api as ec2_e2e
from tests.e2e.conftest import apply, flavor_manifest, get, kubectl, wait_for
from tests.e2e.test_ec2_keypairs_tags import _ami, _client
from tests.e2e.test_resize import _domain_size

pytestmark = pytest.mark.e2e

#: The server process of the EC2 API's own end-to-end tests.
ec2_api = ec2_e2e.ec2_api

BIG_FLAVOR = "e2e-ec2-big"
SNAPSHOT_UID_ANNOTATION = "compute.kubenova.io/instance-snapshot-uid"


def _wait(ec2: Any, waiter: str, attempts: int = 120, **kwargs: Any) -> None:
    ec2.get_waiter(waiter).wait(WaiterConfig={"Delay": 2, "MaxAttempts": attempts}, **kwargs)


def _run_one(ec2: Any, image_id: str) -> str:
    [instance] = ec2.run_instances(
        ImageId=image_id, InstanceType=ec2_e2e.FLAVOR, MinCount=1, MaxCount=1
    )["Instances"]
    return str(instance["InstanceId"])


def test_create_image_then_boot_from_it(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    apply(flavor_manifest(ec2_e2e.FLAVOR, 1, 128, 1))
    ec2 = _client(stack, namespace, ec2_api)
    # Images belong to the whole cluster: a name of this run's own, deleted at the end.
    name = f"e2e-img-{uuid.uuid4().hex[:8]}"
    try:
        instance_id = _run_one(ec2, _ami(ec2))
        _wait(ec2, "instance_running", InstanceIds=[instance_id])

        image_id = ec2.create_image(
            InstanceId=instance_id,
            Name=name,
            Description="made by the e2e test",
            NoReboot=True,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "suite", "Value": "e2e"}]}
            ],
        )["ImageId"]
        [pending] = ec2.describe_images(ImageIds=[image_id])["Images"]
        assert pending["State"] in ("pending", "available")
        assert ec2_e2e._code(ec2.create_image, InstanceId=instance_id, Name=name) == (
            "InvalidAMIName.Duplicate"
        )
        assert ec2_e2e._code(ec2.create_image, InstanceId=instance_id, Name="Web Server (v1)") == (
            "InvalidAMIName.Malformed"
        )

        _wait(ec2, "image_available", attempts=150, ImageIds=[image_id])
        [image] = ec2.describe_images(ImageIds=[image_id])["Images"]
        assert (image["Name"], image["Description"]) == (name, "made by the e2e test")
        assert image["Tags"] == [{"Key": "suite", "Value": "e2e"}]
        kept = get("images", name) or {}
        assert kept["spec"]["description"] == "made by the e2e test"
        snapshot = get("instancesnapshots", name, namespace) or {}
        assert (
            kept["metadata"]["annotations"][SNAPSHOT_UID_ANNOTATION]
            == (snapshot["metadata"]["uid"])
        )

        # The image boots.
        child_id = _run_one(ec2, image_id)
        _wait(ec2, "instance_running", InstanceIds=[child_id])
        ec2.terminate_instances(InstanceIds=[child_id, instance_id])
        wait_for(
            "the terminated instances' objects to go",
            lambda: (
                not ec2_e2e._labelled(namespace, child_id)
                and not ec2_e2e._labelled(namespace, instance_id)
            ),
            timeout=120,
        )
    finally:
        ec2.close()
        kubectl("delete", "instances", "--all", "-n", namespace, "--timeout=120s", check=False)
        kubectl("delete", "instancesnapshots", "--all", "-n", namespace, check=False)
        kubectl("delete", "image", name, "--ignore-not-found", check=False)


def test_modify_instance_type_of_a_stopped_instance_resizes_and_confirms(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    apply(flavor_manifest(ec2_e2e.FLAVOR, 1, 128, 1))
    apply(flavor_manifest(BIG_FLAVOR, 1, 192, 1))
    ec2 = _client(stack, namespace, ec2_api)
    try:
        instance_id = _run_one(ec2, _ami(ec2))
        _wait(ec2, "instance_running", InstanceIds=[instance_id])
        [made] = ec2_e2e._labelled(namespace, instance_id)
        name = made["metadata"]["name"]

        assert ec2_e2e._code(
            ec2.modify_instance_attribute,
            InstanceId=instance_id,
            InstanceType={"Value": BIG_FLAVOR},
        ) == ("IncorrectInstanceState")
        ec2.stop_instances(InstanceIds=[instance_id])
        _wait(ec2, "instance_stopped", InstanceIds=[instance_id])
        assert ec2_e2e._code(
            ec2.modify_instance_attribute, InstanceId=instance_id, InstanceType={"Value": "nope"}
        ) == ("InvalidParameterValue")

        ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": BIG_FLAVOR})

        def resized_and_confirmed() -> bool:
            instance = get("instances", name, namespace) or {}
            status = instance.get("status", {})
            return (
                status.get("observedGeneration") == instance["metadata"]["generation"]
                and status.get("phase") == "Stopped"
                and not status.get("taskState")
                and not status.get("resize")
            )

        wait_for("the resize to be made and confirmed", resized_and_confirmed, timeout=180)
        [stopped] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ]
        assert (stopped["State"]["Name"], stopped["InstanceType"]) == ("stopped", BIG_FLAVOR)
        attribute = ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="instanceType"
        )
        assert attribute["InstanceType"] == {"Value": BIG_FLAVOR}

        ec2.start_instances(InstanceIds=[instance_id])
        _wait(ec2, "instance_running", InstanceIds=[instance_id])
        [running] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ]
        assert running["InstanceType"] == BIG_FLAVOR
        # The guest runs with the new type's memory.
        assert _domain_size(made["metadata"]["uid"]) == (1, 192)
        ec2.terminate_instances(InstanceIds=[instance_id])
    finally:
        ec2.close()
        kubectl("delete", "instances", "--all", "-n", namespace, "--timeout=120s", check=False)
