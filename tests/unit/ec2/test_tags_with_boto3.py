"""Tags through the real boto3 against the in-process server: on instances and images, kept
exactly whatever characters they hold, within EC2's limits, filtered by, listed a page at a
time, and written without losing a concurrent change."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from kubenova.ec2 import ids, tag_store, tags
from tests.unit.ec2 import fakes, serving

#: Keys and values a Kubernetes label would refuse, every one of them.
AWKWARD = {
    "Name": "web server #1",
    "cost center": "Ünïcødé / 東京 * ?",
    "k" * 128: "v" * 256,
    "empty": "",
    "trailing ": " leading",
    'quote"and\\back': "line\nbreak",
}


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _tag_list(mapping):
    return [{"Key": key, "Value": value} for key, value in mapping.items()]


def _described_tags(ec2, instance_id):
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return {tag["Key"]: tag["Value"] for tag in reservation["Instances"][0].get("Tags", [])}


def test_tags_round_trip_whatever_characters_they_hold(ec2, objects):
    made = objects.add_instance("team-a", "web-1")
    instance_id = ids.instance_id(made)
    ec2.create_tags(Resources=[instance_id], Tags=_tag_list(AWKWARD))
    assert _described_tags(ec2, instance_id) == AWKWARD
    stored = objects.instance_objects[("team-a", "web-1")]["metadata"]["annotations"]
    assert json.loads(stored[tags.TAGS_ANNOTATION]) == AWKWARD
    described = ec2.describe_tags()["Tags"]
    assert {(t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in described} == {
        (instance_id, "instance", key, value) for key, value in AWKWARD.items()
    }


def test_create_tags_adds_and_replaces(ec2, objects):
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "a", "Value": "1"}])
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "b", "Value": "2"}, {"Key": "a"}])
    # A tag given without a value is an empty one, as on EC2.
    assert _described_tags(ec2, instance_id) == {"a": "", "b": "2"}


def test_delete_tags_by_key_by_value_and_all(ec2, objects):
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    start = {"a": "1", "b": "2", "c": "3", "d": ""}
    ec2.create_tags(Resources=[instance_id], Tags=_tag_list(start))
    # With a value: only while the tag has it.
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "a", "Value": "other"}])
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "b", "Value": "2"}])
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "d", "Value": "x"}])
    assert _described_tags(ec2, instance_id) == {"a": "1", "c": "3", "d": ""}
    # Without a value: whatever it is.
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "a"}])
    assert _described_tags(ec2, instance_id) == {"c": "3", "d": ""}
    # Without tags: all of them, and the annotation goes.
    ec2.delete_tags(Resources=[instance_id])
    assert _described_tags(ec2, instance_id) == {}
    annotations = objects.instance_objects[("team-a", "web-1")]["metadata"]["annotations"]
    assert tags.TAGS_ANNOTATION not in annotations


def test_image_tags_are_the_namespaces_own(objects):
    ami = ids.image_id(objects.image_objects["cirros"])
    with (
        serving.served(objects) as endpoint,
        serving.client(endpoint) as ours,
        serving.client(endpoint, serving.TEAM_B) as theirs,
    ):
        ours.create_tags(Resources=[ami], Tags=[{"Key": "os", "Value": "cirros 0.6"}])
        [image] = ours.describe_images(ImageIds=[ami])["Images"]
        assert image["Tags"] == [{"Key": "os", "Value": "cirros 0.6"}]
        assert "Tags" not in theirs.describe_images(ImageIds=[ami])["Images"][0]
        assert theirs.describe_tags()["Tags"] == []
        assert ours.describe_tags(Filters=[{"Name": "resource-type", "Values": ["image"]}])[
            "Tags"
        ] == [{"ResourceId": ami, "ResourceType": "image", "Key": "os", "Value": "cirros 0.6"}]
        # The cluster's Image itself is not touched: only the namespace's ConfigMap.
        assert "annotations" not in objects.image_objects["cirros"]["metadata"]
        assert list(objects.config_map_objects) == [("team-a", tag_store.IMAGE_TAGS_CONFIG_MAP)]
        ours.delete_tags(Resources=[ami], Tags=[{"Key": "os"}])
        assert "Tags" not in ours.describe_images()["Images"][0]


def test_limits_are_ec2s_and_a_refusal_changes_nothing(ec2, objects):
    full = ids.instance_id(objects.add_instance("team-a", "full"))
    empty = ids.instance_id(objects.add_instance("team-a", "empty"))
    ec2.create_tags(Resources=[full], Tags=[{"Key": f"k{i}", "Value": ""} for i in range(50)])
    refused = serving.code(ec2.create_tags, Resources=[empty, full], Tags=[{"Key": "one more"}])
    assert refused == "TagLimitExceeded"
    assert _described_tags(ec2, empty) == {}
    # Replacing a tag of a full resource is no new tag.
    ec2.create_tags(Resources=[full], Tags=[{"Key": "k0", "Value": "new"}])
    assert _described_tags(ec2, full)["k0"] == "new"
    with pytest.raises(ClientError) as reserved:
        ec2.create_tags(Resources=[empty], Tags=[{"Key": "aws:owner", "Value": "x"}])
    assert reserved.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "aws:owner" in reserved.value.response["Error"]["Message"]
    for bad in ({"Key": "k" * 129, "Value": ""}, {"Key": "k", "Value": "v" * 257}, {"Key": ""}):
        assert serving.code(ec2.create_tags, Resources=[empty], Tags=[bad]) == (
            "InvalidParameterValue"
        )
    assert serving.code(ec2.delete_tags, Resources=[empty], Tags=[{"Key": "AWS:x"}]) == (
        "InvalidParameterValue"
    )
    assert _described_tags(ec2, empty) == {}


def test_unknown_and_malformed_resources(objects):
    theirs = ids.instance_id(objects.add_instance("team-b", "theirs"))
    ours = ids.instance_id(objects.add_instance("team-a", "ours"))
    tag = [{"Key": "k", "Value": "v"}]
    with serving.served(objects) as endpoint, serving.client(endpoint) as ec2:
        assert serving.code(ec2.create_tags, Resources=[ours, theirs], Tags=tag) == (
            "InvalidInstanceID.NotFound"
        )
        assert serving.code(ec2.create_tags, Resources=["ami-0123456789abcdef0"], Tags=tag) == (
            "InvalidAMIID.NotFound"
        )
        assert serving.code(ec2.create_tags, Resources=["vpc-0123456789abcdef0"], Tags=tag) == (
            "InvalidID"
        )
        assert serving.code(ec2.delete_tags, Resources=["web-1"]) == "InvalidID"
        assert serving.code(ec2.create_tags, Resources=[ours], Tags=tag, DryRun=True) == (
            "DryRunOperation"
        )
        assert serving.code(ec2.describe_tags, Filters=[{"Name": "owner", "Values": ["x"]}]) == (
            "InvalidParameterValue"
        )
    # Nothing was tagged: not ours (named alongside another namespace's), nor theirs.
    assert all(
        tags.TAGS_ANNOTATION not in (o["metadata"].get("annotations") or {})
        for o in objects.instance_objects.values()
    )


def test_describe_instances_and_tags_filter_by_tag(ec2, objects):
    web = ids.instance_id(objects.add_instance("team-a", "web-1"))
    db = ids.instance_id(objects.add_instance("team-a", "db-1"))
    objects.add_instance("team-a", "bare")
    ec2.create_tags(Resources=[web], Tags=[{"Key": "role", "Value": "web tier"}])
    ec2.create_tags(Resources=[db], Tags=[{"Key": "role", "Value": "db"}, {"Key": "backup"}])

    def instances(*filters):
        reservations = ec2.describe_instances(Filters=list(filters))["Reservations"]
        return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])

    assert instances({"Name": "tag:role", "Values": ["web tier"]}) == [web]
    assert instances({"Name": "tag:role", "Values": ["web tier", "db"]}) == sorted([web, db])
    assert instances({"Name": "tag-key", "Values": ["backup"]}) == [db]
    assert instances({"Name": "tag-value", "Values": ["db"]}) == [db]
    assert instances({"Name": "tag:missing", "Values": [""]}) == []
    assert instances(
        {"Name": "tag-key", "Values": ["role"]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ) == sorted([web, db])

    def described(*filters):
        found = ec2.describe_tags(Filters=list(filters))["Tags"]
        return [(t["ResourceId"], t["Key"], t["Value"]) for t in found]

    assert described({"Name": "resource-id", "Values": [web]}) == [(web, "role", "web tier")]
    assert described({"Name": "key", "Values": ["backup"]}) == [(db, "backup", "")]
    assert described({"Name": "value", "Values": ["db"]}) == [(db, "role", "db")]
    assert described({"Name": "resource-type", "Values": ["image"]}) == []


def test_run_instances_applies_tag_specifications(ec2, objects):
    ami = ids.image_id(objects.image_objects["cirros"])
    launch = {"ImageId": ami, "InstanceType": "m1.tiny", "MinCount": 2, "MaxCount": 2}
    made = ec2.run_instances(
        **launch,
        TagSpecifications=[{"ResourceType": "instance", "Tags": _tag_list({"Name": "web a"})}],
    )["Instances"]
    assert [i["Tags"] for i in made] == [[{"Key": "Name", "Value": "web a"}]] * 2
    named = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web a"]}])
    assert len(named["Reservations"][0]["Instances"]) == 2
    refused = serving.code(
        ec2.run_instances,
        **launch,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]}],
    )
    assert refused == "InvalidParameterValue"
    assert serving.code(
        ec2.run_instances,
        **launch,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "aws:x", "Value": "b"}]}],
    ) == ("InvalidParameterValue")
    assert len(objects.instances("team-a")) == 2


def test_a_concurrent_change_is_not_lost(ec2, objects):
    """Another writer changes the tags between this request's read and its write: the write is
    refused on the old resourceVersion and made again on what is there now."""
    instance_id = ids.instance_id(objects.add_instance("team-a", "web-1"))
    ami = ids.image_id(objects.image_objects["cirros"])
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "first", "Value": "1"}])
    writes = []

    def meanwhile(namespace, name):
        objects.before_write.remove(meanwhile)
        writes.append(name)
        if name == "web-1":
            annotations = {tags.TAGS_ANNOTATION: json.dumps({"theirs": "x"})}
            objects.patch_instance(namespace, name, {"metadata": {"annotations": annotations}})
        else:
            data = json.loads(objects.config_map_objects[(namespace, name)]["data"][ami]) | {
                "theirs": "x"
            }
            objects.patch_config_map(namespace, name, {"data": {ami: json.dumps(data)}})

    objects.before_write.append(meanwhile)
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "ours", "Value": "y"}])
    assert _described_tags(ec2, instance_id) == {"theirs": "x", "ours": "y"}
    objects.before_write.append(meanwhile)
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "ours", "Value": "y"}])
    [image] = ec2.describe_images(ImageIds=[ami])["Images"]
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == {
        "first": "1",
        "theirs": "x",
        "ours": "y",
    }
    assert writes == ["web-1", tag_store.IMAGE_TAGS_CONFIG_MAP]


def test_unreadable_tags_do_not_stop_a_description(ec2, objects):
    made = objects.add_instance("team-a", "web-1")
    made["metadata"]["annotations"] = {tags.TAGS_ANNOTATION: "{not json"}
    [reservation] = ec2.describe_instances()["Reservations"]
    assert "Tags" not in reservation["Instances"][0]


def _every_tag(ec2, objects):
    """Tags on three instances, an image and a key pair: 23 in all."""
    resources = [ids.instance_id(objects.add_instance("team-a", f"web-{i}")) for i in range(3)]
    resources.append(ids.image_id(objects.image_objects["cirros"]))
    resources.append(ec2.create_key_pair(KeyName="k", KeyType="ed25519")["KeyPairId"])
    for count, resource in zip((7, 6, 1, 5, 4), resources, strict=True):
        ec2.create_tags(
            Resources=[resource], Tags=[{"Key": f"k{i:02}", "Value": f"v{i}"} for i in range(count)]
        )
    return ec2.describe_tags()["Tags"]


def test_describe_tags_pages_walk_every_tag_once(ec2, objects):
    every = _every_tag(ec2, objects)
    assert len(every) == 23
    assert {tag["ResourceType"] for tag in every} == {"instance", "image", "key-pair"}
    pages = list(ec2.get_paginator("describe_tags").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(page["Tags"]) for page in pages] == [5, 5, 5, 5, 3]
    assert [tag for page in pages for tag in page["Tags"]] == every
    assert "NextToken" not in pages[-1]
    # Filters apply before the pages are cut.
    filtered = ec2.get_paginator("describe_tags").paginate(
        Filters=[
            {"Name": "key", "Values": ["k00", "k03"]},
            {"Name": "value", "Values": ["v[0-3]", "v*"]},
        ],
        PaginationConfig={"PageSize": 5},
    )
    filtered_pages = [page["Tags"] for page in filtered]
    assert [len(tags_of_page) for tags_of_page in filtered_pages] == [5, 4]
    walked = [tag for tags_of_page in filtered_pages for tag in tags_of_page]
    assert walked == [tag for tag in every if tag["Key"] in ("k00", "k03")]
    # Exactly a page's worth: no NextToken pointing at an empty page.
    assert "NextToken" not in ec2.describe_tags(MaxResults=23)


def test_a_tag_deleted_between_pages_shifts_nothing(ec2, objects):
    every = _every_tag(ec2, objects)
    first = ec2.describe_tags(MaxResults=5)
    assert first["Tags"] == every[:5]
    gone = first["Tags"][-1]
    ec2.delete_tags(Resources=[gone["ResourceId"]], Tags=[{"Key": gone["Key"]}])
    second = ec2.describe_tags(MaxResults=5, NextToken=first["NextToken"])
    assert second["Tags"] == every[5:10]


def test_describe_tags_refuses_bad_paging_by_name(ec2, objects):
    _every_tag(ec2, objects)
    for size in (4, 1001, 0):
        with pytest.raises(ClientError) as refused:
            ec2.describe_tags(MaxResults=size)
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert "MaxResults" in refused.value.response["Error"]["Message"]
    assert len(ec2.describe_tags(MaxResults=1000)["Tags"]) == 23
    for token in ("not-a-token", "W10=", "WyJhIiwgMV0="):  # junk, [], ["a", 1]
        with pytest.raises(ClientError) as refused:
            ec2.describe_tags(MaxResults=5, NextToken=token)
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert "NextToken" in refused.value.response["Error"]["Message"]
