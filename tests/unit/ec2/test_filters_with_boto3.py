"""Filters through the real boto3 against the in-process server: the tag filters on
DescribeImages and DescribeInstanceStatus, wildcards and their escapes in every action that
takes Filters, and the filters of the catalog's actions."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from kubenova.ec2 import ids
from tests.unit.ec2 import fakes, serving


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _filter(name, *values):
    return {"Name": name, "Values": list(values)}


def _add_image(objects, name, architecture="x86_64"):
    spec = {"source": {"url": f"http://images/{name}.qcow2"}, "architecture": architecture}
    made = fakes.obj("Image", name, spec)
    objects.image_objects[name] = made
    return ids.image_id(made)


def test_describe_images_filters_by_tag_and_by_field(ec2, objects):
    cirros = ids.image_id(objects.image_objects["cirros"])
    ubuntu = _add_image(objects, "ubuntu-24.04")
    arm = _add_image(objects, "ubuntu-24.04-arm", architecture="aarch64")
    ec2.create_tags(Resources=[cirros], Tags=[{"Key": "os", "Value": "cirros"}])
    ec2.create_tags(Resources=[ubuntu, arm], Tags=[{"Key": "os", "Value": "ubuntu lts"}])
    ec2.create_tags(Resources=[arm], Tags=[{"Key": "arm", "Value": ""}])

    def images(*filters):
        return sorted(
            image["ImageId"] for image in ec2.describe_images(Filters=list(filters))["Images"]
        )

    assert images(_filter("tag:os", "cirros")) == [cirros]
    assert images(_filter("tag:os", "ubuntu*")) == sorted([ubuntu, arm])
    assert images(_filter("tag-key", "arm")) == [arm]
    assert images(_filter("tag-value", "*lts")) == sorted([ubuntu, arm])
    assert images(_filter("tag:os", "ubuntu*"), _filter("architecture", "x86_64")) == [ubuntu]
    assert images(_filter("name", "ubuntu-??.04")) == [ubuntu]
    assert images(_filter("name", "*-arm"), _filter("state", "available")) == [arm]
    assert images(_filter("is-public", "true")) == sorted([cirros, ubuntu, arm])
    assert images(_filter("image-id", ubuntu, arm), _filter("tag-key", "arm")) == [arm]
    assert images(_filter("tag:os", "Cirros")) == []
    # Another namespace's tags are its own: its filters see none of ours.
    with serving.served(objects) as endpoint, serving.client(endpoint, serving.TEAM_B) as theirs:
        assert theirs.describe_images(Filters=[_filter("tag-key", "os")])["Images"] == []
    assert serving.code(
        ec2.describe_images, Filters=[_filter("block-device-mapping.volume-size", "8")]
    ) == ("InvalidParameterValue")


def test_describe_instance_status_filters_by_tag(ec2, objects):
    web = ids.instance_id(objects.add_instance("team-a", "web-1"))
    db = ids.instance_id(objects.add_instance("team-a", "db-1"))
    ec2.create_tags(Resources=[web], Tags=[{"Key": "role", "Value": "web"}])
    ec2.create_tags(Resources=[db], Tags=[{"Key": "role", "Value": "db"}, {"Key": "backup"}])

    def statuses(*filters):
        found = ec2.describe_instance_status(Filters=list(filters))["InstanceStatuses"]
        return sorted(status["InstanceId"] for status in found)

    assert statuses(_filter("tag:role", "web")) == [web]
    assert statuses(_filter("tag-key", "backup")) == [db]
    assert statuses(_filter("tag-value", "w*", "d?")) == sorted([web, db])
    assert statuses(_filter("tag:role", "*"), _filter("instance-state-name", "run*")) == sorted(
        [web, db]
    )
    # Only the instance filters EC2 has for instance status: not DescribeInstances' others.
    assert serving.code(
        ec2.describe_instance_status, Filters=[_filter("instance-type", "m1.tiny")]
    ) == ("InvalidParameterValue")


def test_wildcards_and_escapes_in_describe_instances(ec2, objects):
    star = ids.instance_id(objects.add_instance("team-a", "star"))
    plain = ids.instance_id(objects.add_instance("team-a", "plain", flavor="m1.small"))
    bracket = ids.instance_id(objects.add_instance("team-a", "bracket"))
    ec2.create_tags(Resources=[star], Tags=[{"Key": "Name", "Value": "a*b?"}])
    ec2.create_tags(Resources=[plain], Tags=[{"Key": "Name", "Value": "axbz"}])
    ec2.create_tags(Resources=[bracket], Tags=[{"Key": "Name", "Value": "[ab]"}])

    def instances(*filters):
        reservations = ec2.describe_instances(Filters=list(filters))["Reservations"]
        return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])

    assert instances(_filter("tag:Name", "a*b?")) == sorted([star, plain])
    assert instances(_filter("tag:Name", "a\\*b\\?")) == [star]
    assert instances(_filter("tag:Name", "a\\*b?")) == [star]
    assert instances(_filter("tag:Name", "[ab]")) == [bracket]
    assert instances(_filter("tag:Name", "a")) == []
    assert instances(_filter("instance-type", "m1.*")) == sorted([star, plain, bracket])
    assert instances(_filter("instance-type", "*small")) == [plain]
    assert instances(_filter("private-dns-name", "?lain")) == [plain]
    objects.instance_objects[("team-a", "plain")]["status"]["addresses"] = ["10.0.0.5"]
    assert instances(_filter("private-ip-address", "10.0.0.?")) == [plain]
    # An instance without an address has none for ``*`` to match.
    assert instances(_filter("private-ip-address", "*")) == [plain]


def test_wildcards_in_describe_tags_and_key_pairs(ec2, objects):
    web = ids.instance_id(objects.add_instance("team-a", "web-1"))
    ec2.create_tags(
        Resources=[web],
        Tags=[{"Key": "env:prod", "Value": "yes"}, {"Key": "env:dev", "Value": "no"}],
    )
    found = ec2.describe_tags(Filters=[_filter("key", "env:*"), _filter("value", "y*")])["Tags"]
    assert [(tag["Key"], tag["Value"]) for tag in found] == [("env:prod", "yes")]
    assert ec2.describe_tags(Filters=[_filter("resource-id", "i-*")])["Tags"] != []
    assert ec2.describe_tags(Filters=[_filter("resource-id", "ami-*")])["Tags"] == []
    for name in ("prod-1", "prod-22", "test-1"):
        ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    pairs = ec2.describe_key_pairs(Filters=[_filter("key-name", "prod-?")])["KeyPairs"]
    assert [pair["KeyName"] for pair in pairs] == ["prod-1"]
    pairs = ec2.describe_key_pairs(Filters=[_filter("key-name", "*-1"), _filter("key-type", "ed*")])
    assert [pair["KeyName"] for pair in pairs["KeyPairs"]] == ["prod-1", "test-1"]


def test_the_catalogs_filters(ec2, objects):
    objects.add_flavor("m2.large", vcpus=4, memoryMiB=8192, diskGiB=80)

    def types(*filters):
        found = ec2.describe_instance_types(Filters=list(filters))["InstanceTypes"]
        return [info["InstanceType"] for info in found]

    assert types(_filter("instance-type", "m1.*")) == ["m1.small", "m1.tiny"]
    assert types(_filter("vcpu-info.default-vcpus", "4")) == ["m2.large"]
    assert types(_filter("memory-info.size-in-mib", "*048")) == ["m1.small"]
    assert types(_filter("processor-info.supported-architecture", "x86_64")) == [
        "m1.small",
        "m1.tiny",
        "m2.large",
    ]
    assert types(_filter("current-generation", "false")) == []
    assert serving.code(
        ec2.describe_instance_types, Filters=[_filter("network-info.ipv6-supported", "true")]
    ) == ("InvalidParameterValue")
    regions = ec2.describe_regions(Filters=[_filter("region-name", "kube*")])["Regions"]
    assert [region["RegionName"] for region in regions] == [serving.REGION]
    assert ec2.describe_regions(Filters=[_filter("region-name", "us-*")])["Regions"] == []


def test_an_unknown_filter_is_refused_by_name_even_with_nothing_to_describe(ec2):
    for call in (ec2.describe_instances, ec2.describe_key_pairs, ec2.describe_tags):
        with pytest.raises(ClientError) as refused:
            call(Filters=[_filter("vpc-id", "vpc-1")])
        error = refused.value.response["Error"]
        assert error["Code"] == "InvalidParameterValue"
        assert "'vpc-id'" in error["Message"]
