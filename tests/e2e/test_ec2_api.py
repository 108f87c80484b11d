"""The EC2-compatible API on the real stack: ``kubenova-ec2-api`` started here against the
kube-apiserver, keys made with the real ``kubectl nova ec2-credentials create``, and the real
clients, boto3 and the AWS CLI (``aws``), used as their users use them: the environment lines
``create`` prints, evaluated by a shell.

An instance run through EC2 is an Instance that kubectl sees and the operator boots (the
``instance_running`` waiter); one made with kubectl shows in DescribeInstances; a key of one
namespace neither sees nor touches another's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.conftest import (
    KUBECONFIG,
    KUBECTL,
    LOGS,
    ROOT,
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLAVOR = "e2e-ec2"
REGION = "kubenova-e2e"
IMAGE = "kubenova-tiny"
INSTANCE_ID_LABEL = "ec2.kubenova.io/instance-id"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def ec2_api(stack: dict[str, str]) -> Iterator[str]:
    """A ``kubenova-ec2-api`` process on a free loopback port (plain HTTP); its URL."""
    port = _free_port()
    env = dict(
        stack,
        KUBENOVA_EC2_LISTEN_HOST="127.0.0.1",
        KUBENOVA_EC2_PORT=str(port),
        KUBENOVA_EC2_REGION=REGION,
        # The stack's database, as the operator's: terminated instances show from its records.
        KUBENOVA_DB_URL=stack["KUBENOVA_DB_URL"],
    )
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / "e2e-ec2-api.log", "ab") as log:
        process = subprocess.Popen(
            [str(ROOT / ".venv/bin/kubenova-ec2-api")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the EC2 API to listen", lambda: _listening(port, process), timeout=30)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"kubenova-ec2-api exited with {process.returncode}; see its log")
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _user_env(stack: dict[str, str]) -> dict[str, str]:
    """The user's environment: kubectl and the plugin on the PATH, no AWS settings yet."""
    env = {k: v for k, v in stack.items() if not k.startswith("AWS_")}
    env["KUBECONFIG"] = str(KUBECONFIG)
    env["PATH"] = f"{KUBECTL.parent}{os.pathsep}{env['PATH']}"
    env["HOME"] = str(LOGS / "e2e-ec2-home")
    return env


def _shell(
    env: dict[str, str], script: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _create_credentials(env: dict[str, str], namespace: str, endpoint: str) -> dict[str, str]:
    """``kubectl nova ec2-credentials create``; the variables it exports."""
    created = _shell(
        env,
        f"kubectl nova ec2-credentials create -n {namespace} --endpoint {endpoint}"
        f" --region {REGION}",
    )
    assert created.returncode == 0, created.stderr
    exported = {}
    for line in created.stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", created.stdout
        name, _, value = words[1].partition("=")
        exported[name] = value
    assert set(exported) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_EC2",
    }
    return exported


def _aws(env: dict[str, str], credentials: dict[str, str], *args: str) -> Any:
    """The AWS CLI with the key's environment; its JSON answer."""
    done = subprocess.run(
        [str(ROOT / ".venv/bin/aws"), "ec2", *args, "--output", "json"],
        env={**env, **credentials},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


def _boto3(credentials: dict[str, str]) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=credentials["AWS_ENDPOINT_URL_EC2"],
        region_name=credentials["AWS_DEFAULT_REGION"],
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 2}),
    )


def _code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    return str(refused.value.response["Error"]["Code"])


def _labelled(namespace: str, instance_id: str) -> list[dict[str, Any]]:
    found = kubectl(
        "get",
        "instances",
        "-n",
        namespace,
        "-l",
        f"{INSTANCE_ID_LABEL}={instance_id}",
        "-o",
        "json",
    )
    items: list[dict[str, Any]] = json.loads(found.stdout)["items"]
    return items


def test_eval_of_create_then_aws_describe_regions(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    """The line of the docs: eval "$(kubectl nova ec2-credentials create)"; aws ec2 ..."""
    env = _user_env(stack)
    done = _shell(
        env,
        f'eval "$(kubectl nova ec2-credentials create -n {namespace} --endpoint {ec2_api}'
        f' --region {REGION})" && {ROOT}/.venv/bin/aws ec2 describe-regions --output json',
    )
    assert done.returncode == 0, done.stderr
    regions = json.loads(done.stdout)["Regions"]
    assert [region["RegionName"] for region in regions] == [REGION]


def test_boto3_and_the_aws_cli_run_describe_and_terminate(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    env = _user_env(stack)
    apply(flavor_manifest(FLAVOR, 1, 128, 1))
    credentials = _create_credentials(env, namespace, ec2_api)
    ec2 = _boto3(credentials)
    try:
        types = _aws(env, credentials, "describe-instance-types", "--instance-types", FLAVOR)
        assert types["InstanceTypes"][0]["MemoryInfo"]["SizeInMiB"] == 128
        images = ec2.describe_images()["Images"]
        ami = next(image["ImageId"] for image in images if image["Name"] == IMAGE)

        # boto3: run one, see it with kubectl, wait until the operator has it running.
        reservation = ec2.run_instances(
            ImageId=ami,
            InstanceType=FLAVOR,
            MinCount=1,
            MaxCount=1,
            UserData="#!/bin/sh\necho from-ec2\n",
            ClientToken=f"e2e-{uuid.uuid4().hex}",
        )
        instance_id = reservation["Instances"][0]["InstanceId"]
        [made] = _labelled(namespace, instance_id)
        assert made["spec"]["flavor"] == FLAVOR
        assert made["spec"]["image"] == IMAGE
        assert made["spec"]["userData"] == "#!/bin/sh\necho from-ec2\n"
        ec2.get_waiter("instance_running").wait(
            InstanceIds=[instance_id], WaiterConfig={"Delay": 2, "MaxAttempts": 120}
        )
        assert (get("instances", made["metadata"]["name"], namespace) or {})["status"][
            "phase"
        ] == "Running"
        ec2.get_waiter("instance_status_ok").wait(
            InstanceIds=[instance_id], WaiterConfig={"Delay": 2, "MaxAttempts": 30}
        )

        # An Instance made with kubectl shows in DescribeInstances.
        apply(instance_manifest("from-kubectl", namespace, FLAVOR))
        described = _aws(
            env,
            credentials,
            "describe-instances",
            "--filters",
            f"Name=instance-type,Values={FLAVOR}",
        )
        names = {i["PrivateDnsName"] for r in described["Reservations"] for i in r["Instances"]}
        assert names == {made["metadata"]["name"], "from-kubectl"}
        running = _aws(
            env,
            credentials,
            "describe-instances",
            "--filters",
            "Name=instance-state-name,Values=running",
            f"Name=instance-id,Values={instance_id}",
        )
        assert [i["InstanceId"] for r in running["Reservations"] for i in r["Instances"]] == [
            instance_id
        ]

        # The AWS CLI runs one and terminates it; kubectl sees it come and go.
        ran = _aws(
            env,
            credentials,
            "run-instances",
            "--image-id",
            ami,
            "--instance-type",
            FLAVOR,
            "--count",
            "1",
        )
        cli_id = ran["Instances"][0]["InstanceId"]
        assert len(_labelled(namespace, cli_id)) == 1
        gone = _aws(env, credentials, "terminate-instances", "--instance-ids", cli_id)
        assert gone["TerminatingInstances"][0]["CurrentState"]["Name"] == "shutting-down"

        # boto3 terminates the first; the Instance is deleted, and EC2 still shows both,
        # terminated, from the database's records (as EC2 does for about an hour).
        ec2.terminate_instances(InstanceIds=[instance_id])
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=[instance_id, cli_id], WaiterConfig={"Delay": 2, "MaxAttempts": 60}
        )
        assert not _labelled(namespace, instance_id)
        assert not _labelled(namespace, cli_id)
        described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        (terminated,) = [i for r in described for i in r["Instances"]]
        assert terminated["State"] == {"Code": 48, "Name": "terminated"}
        assert terminated["InstanceType"] == FLAVOR
        assert terminated["ImageId"] == ami
        assert terminated["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
        listed = _aws(
            env,
            credentials,
            "describe-instances",
            "--filters",
            "Name=instance-state-name,Values=terminated",
        )
        assert {cli_id, instance_id} <= {
            i["InstanceId"] for r in listed["Reservations"] for i in r["Instances"]
        }
        again = ec2.terminate_instances(InstanceIds=[instance_id])["TerminatingInstances"]
        states = (again[0]["PreviousState"]["Name"], again[0]["CurrentState"]["Name"])
        assert states == ("terminated", "terminated")
    finally:
        ec2.close()


def test_refusals_bad_secret_unknown_key_and_another_namespace(
    stack: dict[str, str], namespace: str, ec2_api: str
) -> None:
    env = _user_env(stack)
    apply(flavor_manifest(FLAVOR, 1, 128, 1))
    other = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", other)
    clients: list[Any] = []
    try:
        # Asked to stay stopped: the other namespace's Instance only has to exist.
        apply(instance_manifest("theirs", other, FLAVOR, powerState="Stopped"))
        theirs = get("instances", "theirs", other)
        assert theirs is not None
        # The id EC2 gives it: the first 17 hex digits of the SHA-256 of its uid.
        their_id = "i-" + hashlib.sha256(theirs["metadata"]["uid"].encode()).hexdigest()[:17]
        mine = _create_credentials(env, namespace, ec2_api)
        ec2 = _boto3(mine)
        clients.append(ec2)
        assert _code(ec2.describe_instances, InstanceIds=[their_id]) == (
            "InvalidInstanceID.NotFound"
        )
        assert _code(ec2.terminate_instances, InstanceIds=[their_id]) == (
            "InvalidInstanceID.NotFound"
        )
        assert ec2.describe_instances()["Reservations"] == []
        assert get("instances", "theirs", other) is not None
        # Their own key sees it, by the same id.
        their_key = _boto3(_create_credentials(env, other, ec2_api))
        clients.append(their_key)
        [reservation] = their_key.describe_instances(InstanceIds=[their_id])["Reservations"]
        assert reservation["Instances"][0]["PrivateDnsName"] == "theirs"

        wrong = _boto3({**mine, "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
        clients.append(wrong)
        assert _code(wrong.describe_instances) == "SignatureDoesNotMatch"
        unknown = _boto3({**mine, "AWS_ACCESS_KEY_ID": "AKIAZZZZZZZZZZZZZZZZ"})
        clients.append(unknown)
        assert _code(unknown.describe_instances) == "AuthFailure"

        # list, then delete: the deleted key is refused.
        listed = _shell(env, f"kubectl nova ec2-credentials list -n {namespace}")
        assert mine["AWS_ACCESS_KEY_ID"] in listed.stdout, listed.stderr
        deleted = _shell(
            env, f"kubectl nova ec2-credentials delete -n {namespace} {mine['AWS_ACCESS_KEY_ID']}"
        )
        assert deleted.returncode == 0, deleted.stderr
        assert _code(ec2.describe_instances) == "AuthFailure"
    finally:
        for client in clients:
            client.close()
        kubectl("delete", "instances", "--all", "-n", other, "--timeout=90s", check=False)
        kubectl("delete", "namespace", other, "--wait=false", check=False)
