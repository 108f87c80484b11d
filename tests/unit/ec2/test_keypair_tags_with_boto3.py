"""Tags on key pairs through the real boto3 against the in-process server: given at creation,
kept on the key pair's Secret, shown and filtered by DescribeKeyPairs, changed and listed by
CreateTags, DeleteTags and DescribeTags, within EC2's limits and without losing a concurrent
change."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kubenova.ec2 import key_pairs, tags
from tests.unit.ec2 import fakes, serving


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _spec(mapping, resource_type="key-pair"):
    return [
        {
            "ResourceType": resource_type,
            "Tags": [{"Key": key, "Value": value} for key, value in mapping.items()],
        }
    ]


def _public_line() -> bytes:
    private = ed25519.Ed25519PrivateKey.generate()
    return private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def _secret(objects, key_pair_id):
    [secret] = [
        s
        for s in objects.secret_objects.values()
        if s["metadata"]["labels"].get(key_pairs.KEY_PAIR_ID_LABEL) == key_pair_id
    ]
    return secret


def _shown(ec2, key_pair_id):
    [pair] = ec2.describe_key_pairs(KeyPairIds=[key_pair_id])["KeyPairs"]
    return {tag["Key"]: tag["Value"] for tag in pair["Tags"]}


def test_tags_given_at_creation_are_kept_on_the_secret_and_shown(ec2, objects):
    given = {"team": "ops", "cost center": "Ünïcødé * ?"}
    made = ec2.create_key_pair(KeyName="deploy", TagSpecifications=_spec(given))
    assert {tag["Key"]: tag["Value"] for tag in made["Tags"]} == given
    assert _shown(ec2, made["KeyPairId"]) == given
    annotations = _secret(objects, made["KeyPairId"])["metadata"]["annotations"]
    assert json.loads(annotations[tags.TAGS_ANNOTATION]) == given
    imported = ec2.import_key_pair(
        KeyName="laptop", PublicKeyMaterial=_public_line(), TagSpecifications=_spec({"a": ""})
    )
    assert imported["Tags"] == [{"Key": "a", "Value": ""}]
    assert _shown(ec2, imported["KeyPairId"]) == {"a": ""}
    # A key pair made without tags shows none, and its Secret has no tags annotation.
    bare = ec2.create_key_pair(KeyName="bare")
    assert _shown(ec2, bare["KeyPairId"]) == {}
    assert tags.TAGS_ANNOTATION not in _secret(objects, bare["KeyPairId"])["metadata"].get(
        "annotations", {}
    )


def test_tag_specifications_are_checked_before_anything_is_made(ec2, objects):
    refused = serving.code(
        ec2.create_key_pair, KeyName="k", TagSpecifications=_spec({"a": "b"}, "instance")
    )
    assert refused == "InvalidParameterValue"
    too_many = {f"k{i}": "" for i in range(51)}
    assert serving.code(ec2.create_key_pair, KeyName="k", TagSpecifications=_spec(too_many)) == (
        "TagLimitExceeded"
    )
    assert serving.code(
        ec2.import_key_pair,
        KeyName="k",
        PublicKeyMaterial=_public_line(),
        TagSpecifications=_spec({"aws:owner": "x"}),
    ) == ("InvalidParameterValue")
    assert objects.secret_objects == {}


def test_create_delete_and_describe_tags_take_key_pair_ids(ec2, objects):
    made = ec2.create_key_pair(KeyName="deploy", TagSpecifications=_spec({"team": "ops"}))
    key_pair_id = made["KeyPairId"]
    ec2.create_tags(
        Resources=[key_pair_id],
        Tags=[{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "web"}],
    )
    assert _shown(ec2, key_pair_id) == {"env": "prod", "team": "web"}
    listed = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]}])
    assert listed["Tags"] == [
        {"ResourceId": key_pair_id, "ResourceType": "key-pair", "Key": "env", "Value": "prod"},
        {"ResourceId": key_pair_id, "ResourceType": "key-pair", "Key": "team", "Value": "web"},
    ]
    ec2.delete_tags(Resources=[key_pair_id], Tags=[{"Key": "team", "Value": "not this"}])
    ec2.delete_tags(Resources=[key_pair_id], Tags=[{"Key": "env"}])
    assert _shown(ec2, key_pair_id) == {"team": "web"}
    ec2.delete_tags(Resources=[key_pair_id])
    assert _shown(ec2, key_pair_id) == {}
    assert ec2.describe_tags()["Tags"] == []
    secret = _secret(objects, key_pair_id)
    assert tags.TAGS_ANNOTATION not in secret["metadata"]["annotations"]
    # The key itself is as it was.
    [pair] = ec2.describe_key_pairs(KeyNames=["deploy"])["KeyPairs"]
    assert pair["KeyFingerprint"] == made["KeyFingerprint"]


def test_an_unknown_or_foreign_key_pair_id_is_refused_and_nothing_changes(objects):
    tag = [{"Key": "k", "Value": "v"}]
    with (
        serving.served(objects) as endpoint,
        serving.client(endpoint) as ours,
        serving.client(endpoint, serving.TEAM_B) as theirs,
    ):
        mine = ours.create_key_pair(KeyName="mine")["KeyPairId"]
        foreign = theirs.create_key_pair(KeyName="theirs")["KeyPairId"]
        assert serving.code(ours.create_tags, Resources=["key-0123456789abcdef0"], Tags=tag) == (
            "InvalidKeyPair.NotFound"
        )
        # Named together with one of ours: the request is refused whole.
        assert serving.code(ours.create_tags, Resources=[mine, foreign], Tags=tag) == (
            "InvalidKeyPair.NotFound"
        )
        assert serving.code(ours.delete_tags, Resources=[foreign]) == "InvalidKeyPair.NotFound"
        assert serving.code(ours.create_tags, Resources=["key-123"], Tags=tag) == "InvalidID"
        assert _shown(ours, mine) == {}
        assert theirs.describe_tags()["Tags"] == []
    assert all(
        tags.TAGS_ANNOTATION not in s["metadata"]["annotations"]
        for s in objects.secret_objects.values()
    )


def test_the_tag_limit_holds_for_key_pairs(ec2):
    key_pair_id = ec2.create_key_pair(
        KeyName="full", TagSpecifications=_spec({f"k{i}": "" for i in range(50)})
    )["KeyPairId"]
    assert serving.code(ec2.create_tags, Resources=[key_pair_id], Tags=[{"Key": "one more"}]) == (
        "TagLimitExceeded"
    )
    ec2.create_tags(Resources=[key_pair_id], Tags=[{"Key": "k0", "Value": "replaced"}])
    shown = _shown(ec2, key_pair_id)
    assert len(shown) == 50
    assert shown["k0"] == "replaced"


def test_describe_key_pairs_filters_by_tag(ec2):
    web = ec2.create_key_pair(KeyName="web", TagSpecifications=_spec({"role": "web tier"}))
    db = ec2.create_key_pair(KeyName="db", TagSpecifications=_spec({"role": "db", "backup": ""}))
    ec2.create_key_pair(KeyName="bare")

    def names(*filters):
        found = ec2.describe_key_pairs(Filters=list(filters))["KeyPairs"]
        return [pair["KeyName"] for pair in found]

    assert names({"Name": "tag:role", "Values": ["web tier"]}) == ["web"]
    assert names({"Name": "tag:role", "Values": ["web tier", "db"]}) == ["db", "web"]
    assert names({"Name": "tag:role", "Values": ["web*"]}) == ["web"]
    assert names({"Name": "tag-key", "Values": ["backup"]}) == ["db"]
    assert names({"Name": "tag-value", "Values": ["d?"]}) == ["db"]
    assert names({"Name": "tag:missing", "Values": ["*"]}) == []
    assert names(
        {"Name": "tag-key", "Values": ["role"]}, {"Name": "key-name", "Values": ["w*"]}
    ) == ["web"]
    [shown] = ec2.describe_key_pairs(KeyPairIds=[db["KeyPairId"]])["KeyPairs"]
    assert shown["Tags"] == [{"Key": "backup", "Value": ""}, {"Key": "role", "Value": "db"}]
    assert web["KeyPairId"] != db["KeyPairId"]


def test_a_concurrent_change_of_a_key_pairs_tags_is_not_lost(ec2, objects):
    """Another writer changes the Secret's tags between this request's read and its write:
    the write is refused on the old resourceVersion and made again on what is there now."""
    key_pair_id = ec2.create_key_pair(KeyName="k", TagSpecifications=_spec({"first": "1"}))[
        "KeyPairId"
    ]
    secret_name = _secret(objects, key_pair_id)["metadata"]["name"]
    writes = []

    def meanwhile(namespace, name):
        objects.before_write.remove(meanwhile)
        writes.append(name)
        theirs = {tags.TAGS_ANNOTATION: json.dumps({"first": "1", "theirs": "x"})}
        objects.patch_secret(namespace, name, {"metadata": {"annotations": theirs}})

    objects.before_write.append(meanwhile)
    ec2.create_tags(Resources=[key_pair_id], Tags=[{"Key": "ours", "Value": "y"}])
    assert writes == [secret_name]
    assert _shown(ec2, key_pair_id) == {"first": "1", "theirs": "x", "ours": "y"}
