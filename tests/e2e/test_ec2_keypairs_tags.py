"""Key pairs and tags of the EC2 API on the real stack: ``kubenova-ec2-api`` against the real
kube-apiserver, keys from the real ``kubectl nova ec2-credentials create``, and boto3.

What the unit tests cannot show is shown here: the key pair Secrets and the tag annotation and
ConfigMap as the kube-apiserver keeps them, the Instance CRD taking the authorized key line,
and two writers tagging one instance at once with real resourceVersion conflicts.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.e2e import test_ec2_api as ec2_e2e
from tests.e2e.conftest import apply, flavor_manifest, get, kubectl

pytestmark = pytest.mark.e2e

#: The server process of the EC2 API's own end-to-end tests.
ec2_api = ec2_e2e.ec2_api

KEY_PAIR_ID_LABEL = "ec2.kubenova.io/key-pair-id"
TAGS_ANNOTATION = "ec2.kubenova.io/tags"


def _client(stack: dict[str, str], namespace: str, endpoint: str) -> Any:
    env = ec2_e2e._user_env(stack)
    return ec2_e2e._boto3(ec2_e2e._create_credentials(env, namespace, endpoint))


def _ami(ec2: Any) -> str:
    images = ec2.describe_images()["Images"]
    return str(next(image["ImageId"] for image in images if image["Name"] == ec2_e2e.IMAGE))


def _instance_by_id(namespace: str, instance_id: str) -> dict[str, Any]:
    [found] = ec2_e2e._labelled(namespace, instance_id)
    return found


def test_key_pairs_are_secrets_and_reach_the_instance_spec(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    apply(flavor_manifest(ec2_e2e.FLAVOR, 1, 128, 1))
    ec2 = _client(stack, namespace, ec2_api)
    try:
        made = ec2.create_key_pair(
            KeyName="deploy key",
            TagSpecifications=[
                {"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "web"}]}
            ],
        )
        assert made["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")
        assert made["Tags"] == [{"Key": "team", "Value": "web"}]
        public = (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        imported = ec2.import_key_pair(KeyName="laptop", PublicKeyMaterial=public)
        assert ec2_e2e._code(ec2.create_key_pair, KeyName="laptop") == "InvalidKeyPair.Duplicate"

        # As the kube-apiserver keeps them: labelled Secrets of their own type, no private key.
        secrets = json.loads(
            kubectl("get", "secrets", "-n", namespace, "-l", KEY_PAIR_ID_LABEL, "-o", "json").stdout
        )["items"]
        assert sorted(s["metadata"]["labels"][KEY_PAIR_ID_LABEL] for s in secrets) == sorted(
            [made["KeyPairId"], imported["KeyPairId"]]
        )
        assert {s["type"] for s in secrets} == {"kubenova.io/ec2-key-pair"}
        stored = [base64.b64decode(v).decode() for s in secrets for v in s["data"].values()]
        assert not any("PRIVATE" in value for value in stored)
        listed = ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]
        assert [(k["KeyName"], k["KeyType"]) for k in listed] == [
            ("deploy key", "rsa"),
            ("laptop", "ed25519"),
        ]
        assert listed[1]["PublicKey"] == public.decode() + " laptop"

        # A key pair's tags live on its Secret: changed through the kube-apiserver, filtered
        # with EC2's wildcards.
        ec2.create_tags(Resources=[imported["KeyPairId"]], Tags=[{"Key": "team", "Value": "ops"}])
        ec2.delete_tags(Resources=[made["KeyPairId"]], Tags=[{"Key": "team", "Value": "web"}])
        ec2.create_tags(Resources=[made["KeyPairId"]], Tags=[{"Key": "role", "Value": "deploy"}])
        tagged = ec2.describe_key_pairs(Filters=[{"Name": "tag:team", "Values": ["o?s"]}])
        assert [k["KeyName"] for k in tagged["KeyPairs"]] == ["laptop"]
        by_key = ec2.describe_key_pairs(Filters=[{"Name": "tag-key", "Values": ["ro*"]}])
        assert [k["KeyName"] for k in by_key["KeyPairs"]] == ["deploy key"]
        described = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]}])[
            "Tags"
        ]
        assert sorted((t["ResourceId"], t["Key"], t["Value"]) for t in described) == sorted(
            [(imported["KeyPairId"], "team", "ops"), (made["KeyPairId"], "role", "deploy")]
        )
        assert ec2_e2e._code(
            ec2.create_tags, Resources=["key-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}]
        ) == ("InvalidKeyPair.NotFound")

        # RunInstances' KeyName: the CRD takes the line, and DescribeInstances names the key.
        [instance] = ec2.run_instances(
            ImageId=_ami(ec2),
            InstanceType=ec2_e2e.FLAVOR,
            MinCount=1,
            MaxCount=1,
            KeyName="laptop",
        )["Instances"]
        kept = _instance_by_id(namespace, instance["InstanceId"])
        assert kept["spec"]["sshAuthorizedKeys"] == [public.decode() + " laptop"]
        [reservation] = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"]
        assert reservation["Instances"][0]["KeyName"] == "laptop"
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])

        ec2.delete_key_pair(KeyName="laptop")
        ec2.delete_key_pair(KeyPairId=made["KeyPairId"])
        ec2.delete_key_pair(KeyName="laptop")  # gone already: still a success
        assert ec2.describe_key_pairs()["KeyPairs"] == []
    finally:
        ec2.close()


def test_tags_on_instances_and_images_with_concurrent_writers(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    apply(flavor_manifest(ec2_e2e.FLAVOR, 1, 128, 1))
    ec2 = _client(stack, namespace, ec2_api)
    try:
        ami = _ami(ec2)
        [instance] = ec2.run_instances(
            ImageId=ami,
            InstanceType=ec2_e2e.FLAVOR,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web #1"}]}
            ],
        )["Instances"]
        instance_id = instance["InstanceId"]
        awkward = {"cost center": "Ünïcødé / 東京 * ?", "k" * 128: "v" * 256, "empty": ""}
        ec2.create_tags(
            Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in awkward.items()]
        )
        kept = _instance_by_id(namespace, instance_id)
        assert json.loads(kept["metadata"]["annotations"][TAGS_ANNOTATION]) == {
            "Name": "web #1",
            **awkward,
        }
        found = ec2.describe_instances(
            Filters=[{"Name": "tag:cost center", "Values": ["Ünïcødé / 東京 * ?"]}]
        )["Reservations"]
        assert [i["InstanceId"] for r in found for i in r["Instances"]] == [instance_id]

        # Two writers at once, each adding tags of its own: none is lost.
        failures: list[BaseException] = []

        def writer(prefix: str) -> None:
            client = _client(stack, namespace, ec2_api)
            try:
                for index in range(5):
                    client.create_tags(
                        Resources=[instance_id], Tags=[{"Key": f"{prefix}{index}", "Value": "x"}]
                    )
            except BaseException as failed:  # reported below, in the test's thread
                failures.append(failed)
            finally:
                client.close()

        threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        keys = {
            t["Key"]
            for t in ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])[
                "Tags"
            ]
        }
        assert {f"{p}{i}" for p in "ab" for i in range(5)} <= keys

        ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "Name", "Value": "other"}])
        ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "empty", "Value": ""}])
        described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        left = {t["Key"] for t in described[0]["Instances"][0]["Tags"]}
        assert "Name" in left
        assert "empty" not in left

        # An image's tags are the namespace's: a ConfigMap here, the Image untouched.
        ec2.create_tags(Resources=[ami], Tags=[{"Key": "os", "Value": f"tiny {uuid.uuid4()}"}])
        [image] = ec2.describe_images(ImageIds=[ami])["Images"]
        assert [t["Key"] for t in image["Tags"]] == ["os"]
        assert get("configmaps", "kubenova-ec2-image-tags", namespace) is not None
        cluster_image = get("images", ec2_e2e.IMAGE)
        assert TAGS_ANNOTATION not in ((cluster_image or {})["metadata"].get("annotations") or {})
        ec2.terminate_instances(InstanceIds=[instance_id])
    finally:
        ec2.close()
