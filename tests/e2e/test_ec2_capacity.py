"""RunInstances' capacity errors on the real stack: ``kubenova-ec2-api`` against the real
kube-apiserver, keys from the real ``kubectl nova ec2-credentials create``, and boto3.

What the unit tests cannot show is shown here: the kube-apiserver's own quota admission and
quota controller behind InstanceLimitExceeded, and the Hypervisors' status as the operator
writes it behind InsufficientInstanceCapacity; in both cases nothing is created.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e import test_ec2_api as ec2_e2e
from tests.e2e.conftest import apply, flavor_manifest, get, kubectl, wait_for

pytestmark = pytest.mark.e2e

#: The server process of the EC2 API's own end-to-end tests.
ec2_api = ec2_e2e.ec2_api

INSTANCE_COUNT = "count/instances.compute.kubenova.io"
#: More vCPUs than any host of a test machine offers, even at the allocation ratio of 4.
HUGE_FLAVOR = "e2e-ec2-huge"
HUGE_VCPUS = 256


def _client(stack: dict[str, str], namespace: str, endpoint: str) -> Any:
    env = ec2_e2e._user_env(stack)
    return ec2_e2e._boto3(ec2_e2e._create_credentials(env, namespace, endpoint))


def _ami(ec2: Any) -> str:
    images = ec2.describe_images()["Images"]
    return str(next(image["ImageId"] for image in images if image["Name"] == ec2_e2e.IMAGE))


def _instances(namespace: str) -> list[dict[str, Any]]:
    found = kubectl("get", "instances", "-n", namespace, "-o", "json")
    items: list[dict[str, Any]] = json.loads(found.stdout)["items"]
    return items


def _refusal(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    error = refused.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def test_a_quota_of_one_instance_makes_the_second_run_instance_limit_exceeded(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    apply(flavor_manifest(ec2_e2e.FLAVOR, 1, 128, 1))
    apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "instances", "namespace": namespace},
            "spec": {"hard": {INSTANCE_COUNT: "1"}},
        }
    )
    # Admission enforces a quota once the quota controller has filled in its status.
    wait_for(
        "the quota's status",
        lambda: (
            ((get("resourcequota", "instances", namespace) or {}).get("status") or {})
            .get("hard", {})
            .get(INSTANCE_COUNT)
        ),
        timeout=60,
    )
    ec2 = _client(stack, namespace, ec2_api)
    try:
        launch = {"ImageId": _ami(ec2), "InstanceType": ec2_e2e.FLAVOR, "MinCount": 1}
        [first] = ec2.run_instances(**launch, MaxCount=1)["Instances"]
        code, message = _refusal(ec2.run_instances, **launch, MaxCount=1)
        assert code == "InstanceLimitExceeded"
        assert message.startswith("exceeded quota: instances, requested: ")
        assert f"limited: {INSTANCE_COUNT}=1" in message
        # MinCount above what is left: refused too, before anything is made.
        code, _ = _refusal(ec2.run_instances, **{**launch, "MinCount": 2}, MaxCount=2)
        assert code == "InstanceLimitExceeded"
        made = _instances(namespace)
        assert [obj["metadata"]["labels"][ec2_e2e.INSTANCE_ID_LABEL] for obj in made] == [
            first["InstanceId"]
        ]
    finally:
        ec2.close()


def test_a_flavor_larger_than_any_host_is_insufficient_capacity_naming_the_reason(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    apply(flavor_manifest(HUGE_FLAVOR, HUGE_VCPUS, 128, 1))
    ec2 = _client(stack, namespace, ec2_api)
    try:
        code, message = _refusal(
            ec2.run_instances,
            ImageId=_ami(ec2),
            InstanceType=HUGE_FLAVOR,
            MinCount=1,
            MaxCount=1,
        )
        assert code == "InsufficientInstanceCapacity"
        # The scheduler's explanation: every host counted, the up ones for want of vCPUs.
        assert HUGE_FLAVOR in message
        assert "(room for 0): 0/" in message
        assert "insufficient vcpu" in message
        assert _instances(namespace) == []
    finally:
        ec2.close()
        kubectl("delete", "flavor", HUGE_FLAVOR, "--ignore-not-found", check=False)
