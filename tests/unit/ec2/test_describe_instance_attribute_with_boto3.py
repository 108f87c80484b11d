"""DescribeInstanceAttribute through the real boto3 against the in-process server: each
attribute read from the Instance (its type after ModifyInstanceAttribute changed it, its user
data as EC2 sends it), the values true of every Kubenova instance, and the refusals of what
Kubenova does not describe, in EC2's words."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from kubenova.ec2 import ids, protocol
from kubenova_agent.virt import driver
from kubenova_agent.virt.libvirt import domain_xml
from tests.unit.ec2 import fakes, serving

SCRIPT = "#!/bin/sh\necho 'héllo' > /etc/motd\n"


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _attribute(ec2, instance_id: str, attribute: str) -> dict:
    answer = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=attribute)
    assert answer["InstanceId"] == instance_id
    del answer["ResponseMetadata"], answer["InstanceId"]
    return answer


def _refusal(ec2, instance_id: str, attribute: str) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=attribute)
    error = refused.value.response["Error"]
    return error["Code"], error["Message"]


def test_the_instance_type_is_read_back_after_modify_instance_attribute_changed_it(ec2, objects):
    made = objects.add_instance("team-a", "web-1", phase="Stopped", powerState="Stopped")
    instance_id = ids.instance_id(made)
    assert _attribute(ec2, instance_id, "instanceType") == {"InstanceType": {"Value": "m1.tiny"}}
    ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": "m1.small"})
    assert _attribute(ec2, instance_id, "instanceType") == {"InstanceType": {"Value": "m1.small"}}


def test_user_data_is_given_back_base64_as_run_instances_took_it(ec2, objects):
    ami = ids.image_id(objects.image_objects["cirros"])
    # boto3 base64-encodes RunInstances' UserData itself, as for EC2.
    [launched] = ec2.run_instances(
        ImageId=ami, InstanceType="m1.tiny", MinCount=1, MaxCount=1, UserData=SCRIPT
    )["Instances"]
    [(_, instance)] = objects.instance_objects.items()
    assert instance["spec"]["userData"] == SCRIPT
    answer = _attribute(ec2, launched["InstanceId"], "userData")
    assert base64.b64decode(answer["UserData"]["Value"]).decode() == SCRIPT


def test_an_instance_without_user_data_answers_an_empty_value(ec2, objects):
    made = objects.add_instance("team-a", "web-1")
    assert _attribute(ec2, ids.instance_id(made), "userData") == {"UserData": {}}


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("kernel", {"KernelId": {}}),
        ("ramdisk", {"RamdiskId": {}}),
        ("disableApiTermination", {"DisableApiTermination": {"Value": False}}),
        ("disableApiStop", {"DisableApiStop": {"Value": False}}),
        ("instanceInitiatedShutdownBehavior",
         {"InstanceInitiatedShutdownBehavior": {"Value": "stop"}}),
        ("ebsOptimized", {"EbsOptimized": {"Value": False}}),
    ],
)  # fmt: skip
def test_what_every_kubenova_instance_is_answered_in_ec2s_shape(ec2, objects, attribute, expected):
    made = objects.add_instance("team-a", "web-1")
    assert _attribute(ec2, ids.instance_id(made), attribute) == expected


def _root_disk_target() -> str:
    """The device the node agent's domain XML gives the root disk."""
    instance = driver.InstanceSpec(
        uuid="6f1c1b1e-0000-4000-8000-000000000001", name="web-1", hostname="web-1", vcpus=1,
        memory_mib=256, disk_gib=1,
        image=driver.ImageRef(name="cirros", url="http://x/cirros", sha256="ab" * 32,
                              disk_format="qcow2"),
    )  # fmt: skip
    files = domain_xml.DomainFiles(
        disk="/var/lib/kubenova/i/disk",
        config_drive="/var/lib/kubenova/i/disk.config",
        console_log="/var/lib/kubenova/i/console.log",
    )
    root = ET.fromstring(
        domain_xml.build(instance, domain_type="qemu", files=files, network="default", host="h1")
    )
    [target] = [
        disk.find("target")
        for disk in root.iterfind("devices/disk")
        if disk.find("source").get("file") == files.disk
    ]
    return str(target.get("dev"))


def test_the_root_device_is_the_root_disk_of_the_guests_domain(ec2, objects):
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    device = f"/dev/{_root_disk_target()}"
    assert _attribute(ec2, instance_id, "rootDeviceName") == {"RootDeviceName": {"Value": device}}
    assert _attribute(ec2, instance_id, "blockDeviceMapping") == {
        "BlockDeviceMappings": [{"DeviceName": device}]
    }


@pytest.mark.parametrize(
    "attribute",
    ["productCodes", "sourceDestCheck", "groupSet", "sriovNetSupport", "enclaveOptions"],
)
def test_attributes_kubenova_has_nothing_for_are_unsupported_by_name(ec2, objects, attribute):
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    code, message = _refusal(ec2, instance_id, attribute)
    assert code == "UnsupportedOperation"
    assert f"'{attribute}'" in message


@pytest.mark.parametrize("attribute", ["enaSupport", "instancetype", "hostname"])
def test_an_attribute_ec2_does_not_describe_is_an_invalid_value_in_its_words(
    ec2, objects, attribute
):
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    assert _refusal(ec2, instance_id, attribute) == (
        "InvalidParameterValue",
        f"Value ({attribute}) for parameter attribute is invalid. Unknown attribute.",
    )


def test_every_attribute_of_ec2s_list_gets_an_answer_or_a_refusal_by_name(ec2, objects):
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    shape = protocol.service_model().shape_for("InstanceAttributeName")
    refused = {}
    for attribute in shape.enum:
        try:
            ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=attribute)
        except ClientError as refusal:
            error = refusal.response["Error"]
            assert attribute in error["Message"]
            refused[attribute] = error["Code"]
    assert set(refused.values()) <= {"UnsupportedOperation", "InvalidParameterValue"}
    assert [a for a, c in refused.items() if c == "InvalidParameterValue"] == ["enaSupport"]
    assert "instanceType" not in refused


def test_unknown_malformed_and_other_namespaces_instances_are_refused(ec2, objects):
    theirs = objects.add_instance("team-b", "theirs")
    assert _refusal(ec2, "web-1", "instanceType")[0] == "InvalidInstanceID.Malformed"
    for instance_id in ("i-0123456789abcdef0", ids.instance_id(theirs)):
        assert _refusal(ec2, instance_id, "instanceType")[0] == "InvalidInstanceID.NotFound"
    made = objects.add_instance("team-a", "web-1")
    assert (
        serving.code(
            ec2.describe_instance_attribute,
            InstanceId=ids.instance_id(made),
            Attribute="userData",
            DryRun=True,
        )
        == "DryRunOperation"
    )
