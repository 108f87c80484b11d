"""The EC2 API served over HTTP in this process, on objects in memory, driven by the real boto3
client: what a user's script sends and reads."""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, SSLError
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.certs import authority
from kubenova.ec2 import cmd, ids, keys, server, settings
from tests.unit.ec2 import fakes

REGION = "kubenova"
TEAM_A = keys.AccessKey("AKIAAAAAAAAAAAAAAAAA", "secret-a", "team-a")
TEAM_B = keys.AccessKey("AKIABBBBBBBBBBBBBBBB", "secret-b", "team-b")
KEYS = {key.access_key_id: key for key in (TEAM_A, TEAM_B)}


@pytest.fixture
def objects():
    return fakes.FakeCluster()


_CLIENTS: list[Any] = []


@pytest.fixture
def endpoint(objects):
    config = settings.Ec2Settings(listen_host="127.0.0.1", listen_port=0, region=REGION)
    serving = cmd.build_server(config, KEYS.get, objects)
    server.serve_in_thread(serving)
    yield f"http://127.0.0.1:{serving.server_address[1]}"
    while _CLIENTS:
        _CLIENTS.pop().close()
    serving.shutdown()
    serving.server_close()


def _client(endpoint, key=TEAM_A, secret=None):
    client = boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=secret or key.secret_access_key,
        config=Config(retries={"max_attempts": 1}),
    )
    _CLIENTS.append(client)
    return client


def _code(call, *args, **kwargs):
    with pytest.raises(ClientError) as refused:
        call(*args, **kwargs)
    return refused.value.response["Error"]["Code"]


def _ami(objects):
    return ids.image_id(objects.image_objects["cirros"])


def test_catalog_regions_zones_types_and_images(endpoint, objects):
    ec2 = _client(endpoint)
    regions = ec2.describe_regions()["Regions"]
    assert [(r["RegionName"], r["Endpoint"]) for r in regions] == [(REGION, endpoint)]
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [(z["ZoneName"], z["State"]) for z in zones] == [
        ("az-2", "unavailable"),
        ("nova", "available"),
    ]
    types = ec2.describe_instance_types(InstanceTypes=["m1.small"])["InstanceTypes"]
    assert len(types) == 1
    assert types[0]["VCpuInfo"]["DefaultVCpus"] == 1
    assert types[0]["MemoryInfo"]["SizeInMiB"] == 2048
    images = ec2.describe_images()["Images"]
    assert [(i["ImageId"], i["Name"]) for i in images] == [(_ami(objects), "cirros")]


def test_run_instances_makes_instance_objects(endpoint, objects):
    ec2 = _client(endpoint)
    reservation = ec2.run_instances(
        ImageId=_ami(objects),
        InstanceType="m1.tiny",
        MinCount=2,
        MaxCount=2,
        UserData="#cloud-config\nhostname: x\n",
        Placement={"AvailabilityZone": "nova"},
    )
    made = reservation["Instances"]
    assert [i["AmiLaunchIndex"] for i in made] == [0, 1]
    assert {i["State"]["Name"] for i in made} == {"pending"}
    created = objects.instances("team-a")
    assert len(created) == 2
    spec = created[0]["spec"]
    # boto3 base64-encodes the user data; the Instance holds it as text.
    assert spec == {
        "flavor": "m1.tiny",
        "image": "cirros",
        "userData": "#cloud-config\nhostname: x\n",
        "availabilityZone": "nova",
    }
    labelled = {o["metadata"]["labels"][ids.INSTANCE_ID_LABEL] for o in created}
    assert labelled == {i["InstanceId"] for i in made}
    assert objects.instances("team-b") == []


def test_a_client_token_makes_the_instances_once(endpoint, objects):
    ec2 = _client(endpoint)
    call = {
        "ImageId": _ami(objects),
        "InstanceType": "m1.tiny",
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": "deploy-42",
    }
    first = ec2.run_instances(**call)
    again = ec2.run_instances(**call)
    assert first["ReservationId"] == again["ReservationId"]
    assert [i["InstanceId"] for i in first["Instances"]] == [
        i["InstanceId"] for i in again["Instances"]
    ]
    assert len(objects.instances("team-a")) == 1
    [described] = ec2.describe_instances()["Reservations"][0]["Instances"]
    assert described["ClientToken"] == "deploy-42"


def test_describe_filters_and_pages(endpoint, objects):
    for index in range(7):
        objects.add_instance("team-a", f"web-{index}", phase="Running")
    objects.add_instance("team-a", "db-0", phase="Stopped", powerState="Stopped", flavor="m1.small")
    objects.add_instance("team-b", "theirs", phase="Running")
    ec2 = _client(endpoint)

    def described(**kwargs):
        reservations = ec2.describe_instances(**kwargs)["Reservations"]
        return [i for r in reservations for i in r["Instances"]]

    assert len(described()) == 8
    stopped = described(Filters=[{"Name": "instance-state-name", "Values": ["stopped"]}])
    assert [(i["PrivateDnsName"], i["State"]["Code"]) for i in stopped] == [("db-0", 80)]
    small = described(Filters=[{"Name": "instance-type", "Values": ["m1.small"]}])
    assert [i["PrivateDnsName"] for i in small] == ["db-0"]
    by_id = described(InstanceIds=[stopped[0]["InstanceId"]])
    assert [i["PrivateDnsName"] for i in by_id] == ["db-0"]
    pages = ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
    names = [
        i["PrivateDnsName"] for page in pages for r in page["Reservations"] for i in r["Instances"]
    ]
    assert names == [f"web-{i}" for i in range(7)] + ["db-0"]
    assert _code(ec2.describe_instances, Filters=[{"Name": "vpc-id", "Values": ["y"]}]) == (
        "InvalidParameterValue"
    )


def test_terminate_deletes_the_instance(endpoint, objects):
    made = objects.add_instance("team-a", "web-1")
    ec2 = _client(endpoint)
    instance_id = ids.instance_id(made)
    changes = ec2.terminate_instances(InstanceIds=[instance_id])["TerminatingInstances"]
    assert changes == [
        {
            "InstanceId": instance_id,
            "PreviousState": {"Code": 16, "Name": "running"},
            "CurrentState": {"Code": 32, "Name": "shutting-down"},
        }
    ]
    assert objects.deleted == [("team-a", "web-1")]


def test_stop_start_and_reboot_ask_through_the_spec(endpoint, objects):
    made = objects.add_instance("team-a", "web-1")
    ec2 = _client(endpoint)
    instance_id = ids.instance_id(made)
    stopping = ec2.stop_instances(InstanceIds=[instance_id])["StoppingInstances"][0]
    assert stopping["CurrentState"]["Name"] == "stopping"
    assert objects.instance_objects[("team-a", "web-1")]["spec"]["powerState"] == "Stopped"
    assert _code(ec2.reboot_instances, InstanceIds=[instance_id]) == "IncorrectInstanceState"
    objects.instance_objects[("team-a", "web-1")]["status"]["phase"] = "Stopped"
    starting = ec2.start_instances(InstanceIds=[instance_id])["StartingInstances"][0]
    assert starting["CurrentState"]["Name"] == "pending"
    assert objects.instance_objects[("team-a", "web-1")]["spec"]["powerState"] == "Running"
    objects.instance_objects[("team-a", "web-1")]["status"]["phase"] = "Running"
    ec2.reboot_instances(InstanceIds=[instance_id])
    assert objects.instance_objects[("team-a", "web-1")]["spec"]["reboot"]["type"] == "Soft"


def test_a_key_sees_and_touches_only_its_namespace(endpoint, objects):
    theirs = objects.add_instance("team-b", "theirs")
    ec2 = _client(endpoint, TEAM_A)
    instance_id = ids.instance_id(theirs)
    assert ec2.describe_instances()["Reservations"] == []
    assert _code(ec2.describe_instances, InstanceIds=[instance_id]) == "InvalidInstanceID.NotFound"
    assert _code(ec2.terminate_instances, InstanceIds=[instance_id]) == (
        "InvalidInstanceID.NotFound"
    )
    assert objects.deleted == []
    assert len(_client(endpoint, TEAM_B).describe_instances()["Reservations"]) == 1


def test_refusals_carry_ec2s_codes(endpoint, objects):
    ec2 = _client(endpoint)
    assert _code(_client(endpoint, secret="wrong").describe_instances) == "SignatureDoesNotMatch"
    stranger = keys.AccessKey("AKIAZZZZZZZZZZZZZZZZ", "x", "team-a")
    assert _code(_client(endpoint, stranger).describe_instances) == "AuthFailure"
    assert _code(ec2.describe_instances, InstanceIds=["web-1"]) == "InvalidInstanceID.Malformed"
    assert _code(ec2.describe_instances, InstanceIds=["i-0123456789abcdef0"]) == (
        "InvalidInstanceID.NotFound"
    )
    assert _code(ec2.describe_images, ImageIds=["ami-0123456789abcdef0"]) == (
        "InvalidAMIID.NotFound"
    )
    assert (
        _code(
            ec2.run_instances,
            ImageId="ami-0123456789abcdef0",
            InstanceType="m1.tiny",
            MinCount=1,
            MaxCount=1,
        )
        == "InvalidAMIID.NotFound"
    )
    assert (
        _code(
            ec2.run_instances, ImageId=_ami(objects), InstanceType="x9.huge", MinCount=1, MaxCount=1
        )
        == "InvalidParameterValue"
    )
    assert _code(ec2.run_instances, ImageId=_ami(objects), MinCount=1, MaxCount=1) == (
        "MissingParameter"
    )
    assert (
        _code(
            ec2.run_instances, ImageId=_ami(objects), InstanceType="m1.tiny", MinCount=3, MaxCount=2
        )
        == "InvalidParameterValue"
    )
    assert _code(ec2.describe_instances, DryRun=True) == "DryRunOperation"
    assert _code(ec2.describe_vpcs) == "UnsupportedOperation"


def _raw(endpoint, body, headers=None):
    host = endpoint.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def test_an_unknown_action_is_invalid_action(endpoint):
    # Signed as boto3 signs, with an action EC2 does not have.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=b"Action=LaunchRockets&Version=2016-11-15",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(TEAM_A.access_key_id, TEAM_A.secret_access_key), "ec2", REGION).add_auth(
        request
    )
    prepared = request.prepare()
    status, body = _raw(endpoint, prepared.body, dict(prepared.headers))
    assert status == 400
    assert b"<Code>InvalidAction</Code>" in body


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"", {}),
        (b"\xff\xfe\x00garbage", {"Authorization": "AWS4-HMAC-SHA256 \xff"}),
        (b"Action=DescribeInstances", {"Authorization": "AWS4-HMAC-SHA256 Credential=/////"}),
        (b"%%%=%%%&&&==", {"X-Amz-Date": "yesterday"}),
        (base64.b64encode(b"x" * 1000), {"Content-Type": "application/json"}),
    ],
)
def test_malformed_requests_are_refused_not_crashed_on(endpoint, body, headers):
    status, answer = _raw(endpoint, body, headers)
    assert status in (400, 401, 403)
    assert b"<Errors><Error><Code>" in answer
    # And the server still serves.
    assert _client(endpoint).describe_regions()["Regions"]


def test_a_body_too_large_is_refused(endpoint):
    status, _ = _raw(endpoint, b"x" * (server.MAX_BODY + 1))
    assert status == 413


def test_https_with_the_ca_bundle_the_credentials_name(tmp_path, objects):
    ca = authority.issue_ca("ec2-test-ca")
    leaf = authority.issue_server_cert(ca, ["localhost"])
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem())
    (tmp_path / "tls.key").write_bytes(leaf.key_pem())
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    config = settings.Ec2Settings.from_env(
        {
            "KUBENOVA_EC2_LISTEN_HOST": "127.0.0.1",
            "KUBENOVA_EC2_PORT": "0",
            "KUBENOVA_EC2_TLS_CERT": str(tmp_path / "tls.crt"),
            "KUBENOVA_EC2_TLS_KEY": str(tmp_path / "tls.key"),
            "KUBENOVA_EC2_REGION": REGION,
        }
    )
    serving = cmd.build_server(config, KEYS.get, objects)
    server.serve_in_thread(serving)
    url = f"https://localhost:{serving.server_address[1]}"
    trusting = boto3.client(
        "ec2",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=TEAM_A.access_key_id,
        aws_secret_access_key=TEAM_A.secret_access_key,
        verify=str(tmp_path / "ca.crt"),
        config=Config(retries={"max_attempts": 1}),
    )
    untrusting = boto3.client(
        "ec2",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=TEAM_A.access_key_id,
        aws_secret_access_key=TEAM_A.secret_access_key,
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        assert trusting.describe_regions()["Regions"][0]["Endpoint"].startswith("https://")
        with pytest.raises(SSLError):
            untrusting.describe_regions()
    finally:
        trusting.close()
        untrusting.close()
        serving.shutdown()
        serving.server_close()


def test_the_apiservers_refusal_is_an_invalid_parameter_naming_the_field(endpoint, objects):
    message = 'Instance.compute.kubenova.io "x" is invalid: spec.hostname: Invalid value: "-"'

    def refuse(namespace, body):
        refused = k8s_exceptions.ApiException(status=422, reason="Unprocessable Entity")
        refused.body = json.dumps({"kind": "Status", "message": message, "code": 422})
        raise refused

    objects.create_instance = refuse
    ec2 = _client(endpoint)
    with pytest.raises(ClientError) as refused:
        ec2.run_instances(ImageId=_ami(objects), InstanceType="m1.tiny", MinCount=1, MaxCount=1)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert refused.value.response["Error"]["Message"] == message


def test_a_cluster_that_does_not_answer_is_an_internal_error(endpoint, objects):
    def unreachable(namespace, label_selector=""):
        raise ConnectionRefusedError("connection refused")

    objects.instances = unreachable
    assert _code(_client(endpoint).describe_instances) == "InternalError"


def test_paging_parameters_are_checked(endpoint, objects):
    ec2 = _client(endpoint)
    assert _code(ec2.describe_instances, NextToken="not-a-token") == "InvalidPaginationToken"
    assert _code(ec2.describe_instances, MaxResults=4) == "InvalidParameterValue"
    assert _code(ec2.describe_instances, MaxResults=5, InstanceIds=["i-0123456789abcdef0"]) == (
        "InvalidParameterValue"
    )


def test_instance_status_lists_running_ones_and_all_when_asked(endpoint, objects):
    running = objects.add_instance("team-a", "web-1")
    objects.add_instance("team-a", "web-2", phase="Building")
    objects.add_instance("team-a", "db-0", phase="Stopped", powerState="Stopped")
    failed = objects.add_instance("team-a", "bad-0", phase="Error")
    ec2 = _client(endpoint)
    listed = ec2.describe_instance_status()["InstanceStatuses"]
    assert [(s["InstanceId"], s["InstanceStatus"]["Status"]) for s in listed] == [
        (ids.instance_id(running), "ok")
    ]
    every = ec2.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
    assert [(s["InstanceState"]["Name"], s["InstanceStatus"]["Status"]) for s in every] == [
        ("running", "ok"),
        ("pending", "initializing"),
        ("stopped", "not-applicable"),
        ("terminated", "impaired"),
    ]
    assert ids.instance_id(failed) == every[3]["InstanceId"]
    ec2.get_waiter("instance_status_ok").wait(
        InstanceIds=[ids.instance_id(running)], WaiterConfig={"Delay": 1, "MaxAttempts": 2}
    )
    assert _code(
        ec2.describe_instance_status, Filters=[{"Name": "vpc-id", "Values": ["vpc-1"]}]
    ) == ("InvalidParameterValue")


def test_console_output_is_the_guests_and_boto3_decodes_it(endpoint, objects):
    booted = objects.add_instance("team-a", "web-1")
    quiet = objects.add_instance("team-a", "web-2", phase="Building")
    objects.console[("team-a", "web-1")] = "kubenova-guest: ready\nhello from user data\n"
    ec2 = _client(endpoint)
    answer = ec2.get_console_output(InstanceId=ids.instance_id(booted))
    assert answer["InstanceId"] == ids.instance_id(booted)
    assert answer["Output"] == "kubenova-guest: ready\nhello from user data\n"
    assert "Output" not in ec2.get_console_output(InstanceId=ids.instance_id(quiet))
    theirs = objects.add_instance("team-b", "theirs")
    objects.console[("team-b", "theirs")] = "secret"
    assert _code(ec2.get_console_output, InstanceId=ids.instance_id(theirs)) == (
        "InvalidInstanceID.NotFound"
    )
