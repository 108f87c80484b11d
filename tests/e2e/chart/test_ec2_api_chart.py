"""The chart's EC2 API, as a user meets it: the release upgraded with ``ec2Api.enabled`` (and a
``publicUrl`` this machine reaches through a port-forward), then ``eval "$(kubectl nova
ec2-credentials create)"`` with nothing else given, and the AWS CLI and boto3 over HTTPS,
verified against the CA that the ConfigMap kube-public/kubenova-ec2-api publishes: the chart
wrote its endpoint and region, the operator its ``ca.crt``. The Service's own names are
certified too, checked at its cluster address as the console proxy's are.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from tests.e2e.chart.conftest import FLAVOR, NAMESPACE, helm_install
from tests.e2e.conftest import KUBECONFIG, KUBECTL, LOGS, ROOT, get, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.chart]

NAME = "kubenova-ec2-api"
ENDPOINT_CONFIGMAP = ("kube-public", "kubenova-ec2-api")
REGION = "kubenova"  # the chart's default


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"kubectl port-forward exited with {process.returncode}")
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _published() -> dict[str, str]:
    namespace, name = ENDPOINT_CONFIGMAP
    return dict((get("configmap", name, namespace) or {}).get("data") or {})


def _trust_bundle() -> str:
    configmap = get("configmap", "kubenova-ca", NAMESPACE)
    assert configmap is not None, "the operator has not published its CA"
    return str(configmap["data"]["ca.crt"])


@pytest.fixture(scope="module")
def public_url(release: str) -> Iterator[str]:
    """The release with the EC2 API on, its publicUrl https://localhost:PORT forwarded to the
    Service; yields that URL. Afterwards the release is put back as `make up` installs it."""
    port = _free_port()
    url = f"https://localhost:{port}"
    helm_install("--set", "ec2Api.enabled=true", "--set", f"ec2Api.publicUrl={url}")
    forward: subprocess.Popen[bytes] | None = None
    try:
        # The chart's keys at once; the CA once the (restarted) operator's certificate pass ran.
        wait_for(
            "the operator to publish the CA beside the EC2 API's endpoint",
            lambda: (
                _published().get("endpoint") == url
                and _published().get("ca.crt") == _trust_bundle()
            ),
            timeout=240,
        )
        LOGS.mkdir(parents=True, exist_ok=True)
        with open(LOGS / "chart-ec2-port-forward.log", "ab") as log:
            forward = subprocess.Popen(
                [
                    str(KUBECTL),
                    "--kubeconfig",
                    str(KUBECONFIG),
                    "port-forward",
                    "-n",
                    NAMESPACE,
                    f"service/{NAME}",
                    f"{port}:8788",  # the Service's port (the chart's default)
                    "--address",
                    "127.0.0.1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for("the port-forward to listen", lambda: _listening(port, forward), timeout=60)
        yield url
    finally:
        if forward is not None and forward.poll() is None:
            os.killpg(forward.pid, signal.SIGTERM)
            forward.wait(timeout=20)
        helm_install()


@pytest.fixture
def user_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """A user's shell: kubectl and its nova plugin on the PATH, a home of its own (where the
    plugin caches the CA), and no AWS settings yet."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["KUBECONFIG"] = str(KUBECONFIG)
    env["PATH"] = os.pathsep.join([str(KUBECTL.parent), str(ROOT / ".venv/bin"), env["PATH"]])
    env["HOME"] = str(tmp_path)
    return env


def _shell(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _exported(stdout: str) -> dict[str, str]:
    exported = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", stdout
        name, _, value = words[1].partition("=")
        exported[name] = value
    return exported


def test_credentials_from_the_published_configmap_reach_the_api_over_verified_https(
    public_url: str, user_namespace: str, user_env: dict[str, str]
) -> None:
    created = _shell(user_env, f"kubectl nova ec2-credentials create -n {user_namespace}")
    assert created.returncode == 0, created.stderr
    credentials = _exported(created.stdout)
    # Nothing given but the namespace: endpoint, region and CA all come from the ConfigMap.
    assert credentials["AWS_ENDPOINT_URL_EC2"] == public_url
    assert credentials["AWS_DEFAULT_REGION"] == REGION
    assert pathlib.Path(credentials["AWS_CA_BUNDLE"]).read_text() == _trust_bundle()

    # The line of the docs, run by a shell: eval, then the AWS CLI.
    home = pathlib.Path(user_env["HOME"])
    aws = f"{ROOT}/.venv/bin/aws ec2"
    done = _shell(
        user_env,
        f'eval "$(kubectl nova ec2-credentials create -n {user_namespace})"'
        f' && {aws} describe-regions --output json > "$HOME/regions.json"'
        f" && {aws} describe-instance-types --instance-types {FLAVOR} --output json"
        ' > "$HOME/types.json"',
    )
    assert done.returncode == 0, done.stderr
    regions = json.loads((home / "regions.json").read_text())["Regions"]
    assert [(r["RegionName"], r["Endpoint"]) for r in regions] == [(REGION, public_url)]
    types = json.loads((home / "types.json").read_text())
    (flavor,) = types["InstanceTypes"]
    assert flavor["InstanceType"] == FLAVOR
    assert flavor["VCpuInfo"]["DefaultVCpus"] == 1
    assert flavor["MemoryInfo"]["SizeInMiB"] == 128

    # boto3, with the same environment's values.
    ec2 = _boto3(credentials, verify=credentials["AWS_CA_BUNDLE"])
    assert [r["RegionName"] for r in ec2.describe_regions()["Regions"]] == [REGION]
    listed = ec2.describe_instance_types(InstanceTypes=[FLAVOR])["InstanceTypes"]
    assert [t["InstanceType"] for t in listed] == [FLAVOR]

    # The verification is real: without Kubenova's CA the server is not trusted.
    with pytest.raises(SSLError):
        _boto3(credentials, verify=True).describe_regions()


def test_the_service_presents_a_certificate_for_its_names_signed_by_the_published_ca(
    public_url: str,
) -> None:
    service = get("service", NAME, NAMESPACE)
    assert service is not None
    address, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    context = ssl.create_default_context(cadata=_published()["ca.crt"])
    hostname = f"{NAME}.{NAMESPACE}.svc"
    with (
        socket.create_connection((address, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    # Verified for the Service's name; the unsigned request is refused as EC2 refuses it.
    assert answer.startswith(b"HTTP/1."), answer[:200]
    assert b"AuthFailure" in answer, answer[:500]


def test_console_output_shows_the_user_data_of_a_guest_run_with_a_tagged_key(
    public_url: str, user_namespace: str, user_env: dict[str, str]
) -> None:
    # GetConsoleOutput reads the Instance's consolelog subresource: the chart's
    # kubenova-subresources behind its APIService asks the guest's host over the message bus.
    created = _shell(user_env, f"kubectl nova ec2-credentials create -n {user_namespace}")
    assert created.returncode == 0, created.stderr
    credentials = _exported(created.stdout)
    ec2 = _boto3(credentials, verify=credentials["AWS_CA_BUNDLE"])
    ami = next(
        image["ImageId"]
        for image in ec2.describe_images()["Images"]
        if image["Name"] == "kubenova-tiny"
    )
    # Characters a console or a shell would mangle, and a line of this run's own.
    marker = f"from-ec2-{os.urandom(4).hex()}"
    user_data = f"#!/bin/sh\necho {marker} '<quoted>' & \"double\"\n"
    # A key pair, tagged after it is made: the chart's ServiceAccount creates and patches the
    # key's Secret.
    key = ec2.create_key_pair(KeyName="console key")
    ec2.create_tags(Resources=[key["KeyPairId"]], Tags=[{"Key": "use", "Value": "console"}])
    [listed] = ec2.describe_key_pairs(KeyNames=["console key"])["KeyPairs"]
    assert listed["Tags"] == [{"Key": "use", "Value": "console"}]
    [launched] = ec2.run_instances(
        ImageId=ami,
        InstanceType=FLAVOR,
        MinCount=1,
        MaxCount=1,
        UserData=user_data,
        KeyName="console key",
    )["Instances"]
    instance_id = launched["InstanceId"]
    try:
        ec2.get_waiter("instance_running").wait(
            InstanceIds=[instance_id], WaiterConfig={"Delay": 2, "MaxAttempts": 120}
        )
        # The tiny guest prints its user data between these lines once it has read the
        # config drive; boto3 decodes the base64 Output.
        expected = f"kubenova-guest: user-data begin\n{user_data}"

        def shown() -> str | None:
            output = ec2.get_console_output(InstanceId=instance_id).get("Output") or ""
            return output if expected in output.replace("\r\n", "\n") else None

        output = wait_for("the user data in GetConsoleOutput", shown, timeout=240, interval=5)
        assert "kubenova-guest: user-data end" in output

        # The AWS CLI reads the same output (`--output text` prints it decoded).
        done = _shell(
            {**user_env, **credentials},
            f"{ROOT}/.venv/bin/aws ec2 get-console-output --instance-id {instance_id}"
            " --output text",
        )
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])


def _boto3(credentials: dict[str, str], *, verify: bool | str) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=credentials["AWS_ENDPOINT_URL_EC2"],
        region_name=credentials["AWS_DEFAULT_REGION"],
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        verify=verify,
        config=Config(retries={"max_attempts": 1}),
    )
