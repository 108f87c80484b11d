"""The Query parameters read by botocore's input shapes, and the XML written by its output
shapes, checked by botocore's own EC2 serializer and parser (what the SDKs use)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from botocore import parsers, serialize

from kubenova.ec2 import errors, protocol, responses


def _as_boto3_sends(action: str, params: dict[str, Any]) -> dict[str, str]:
    """The flat parameters botocore's EC2 serializer makes of ``params``."""
    operation = protocol.operation_model(action)
    request = serialize.create_serializer("ec2").serialize_to_request(params, operation)
    return {key: str(value) for key, value in request["body"].items()}


def _parsed(action: str, body: bytes, status: int = 200) -> Any:
    operation = protocol.operation_model(action)
    return parsers.create_parser("ec2").parse(
        {"body": body, "headers": {}, "status_code": status}, operation.output_shape
    )


def test_lists_filters_and_structures_come_back_as_boto3_gave_them():
    params = {
        "InstanceIds": ["i-00000000000000001", "i-00000000000000002"],
        "Filters": [
            {"Name": "instance-state-name", "Values": ["running", "stopped"]},
            {"Name": "instance-type", "Values": ["m1.tiny"]},
        ],
        "MaxResults": 5,
        "DryRun": False,
    }
    flat = _as_boto3_sends("DescribeInstances", params)
    assert flat["Filter.1.Value.2"] == "stopped"  # the shape's names, not the members'
    shape = protocol.operation_model("DescribeInstances").input_shape
    assert protocol.parse_params(shape, flat) == params


def test_run_instances_placement_and_counts():
    params = {
        "ImageId": "ami-0123456789abcdef0",
        "MinCount": 1,
        "MaxCount": 3,
        "InstanceType": "m1.tiny",
        "Placement": {"AvailabilityZone": "az-2"},
        "ClientToken": "token-1",
    }
    flat = _as_boto3_sends("RunInstances", params)
    assert flat["Placement.AvailabilityZone"] == "az-2"
    shape = protocol.operation_model("RunInstances").input_shape
    assert protocol.parse_params(shape, flat) == params


def test_a_number_that_is_not_one_is_invalid_and_named():
    shape = protocol.operation_model("RunInstances").input_shape
    with pytest.raises(errors.Ec2Error) as refused:
        protocol.parse_params(shape, {"MinCount": "one", "MaxCount": "1"})
    assert refused.value.code == errors.INVALID_PARAMETER_VALUE
    assert "MinCount" in refused.value.message


def test_an_unknown_action_is_invalid_action():
    with pytest.raises(errors.Ec2Error) as refused:
        protocol.operation_model("LaunchRockets")
    assert refused.value.code == errors.INVALID_ACTION


def test_describe_instances_answer_round_trips_through_botocore():
    launched = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    output = {
        "NextToken": "abc",
        "Reservations": [
            {
                "ReservationId": "r-0123456789abcdef0",
                "OwnerId": "team-a",
                "Groups": [],
                "Instances": [
                    {
                        "InstanceId": "i-0123456789abcdef0",
                        "State": {"Code": 16, "Name": "running"},
                        "LaunchTime": launched,
                        "Placement": {"AvailabilityZone": "nova", "Tenancy": "default"},
                        "EbsOptimized": False,
                        "AmiLaunchIndex": 0,
                    }
                ],
            }
        ],
    }
    parsed = _parsed("DescribeInstances", responses.answer("DescribeInstances", output, "req-1"))
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"
    del parsed["ResponseMetadata"]
    assert parsed == output


def test_members_outside_the_shape_are_left_out():
    body = responses.answer("DescribeRegions", {"Regions": [], "Bogus": 1}, "req-2")
    assert b"Bogus" not in body


def test_error_document_is_ec2s_and_botocore_reads_its_code():
    body = responses.error(errors.INVALID_INSTANCE_ID_NOT_FOUND, "no such instance", "req-3")
    assert body.startswith(b"<?xml")
    assert b"<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code>" in body
    assert b"<RequestID>req-3</RequestID>" in body
    parsed = _parsed("DescribeInstances", body, status=400)
    assert parsed["Error"] == {"Code": "InvalidInstanceID.NotFound", "Message": "no such instance"}
    assert parsed["ResponseMetadata"]["RequestId"] == "req-3"
