"""ModifyInstanceAttribute through the real boto3 against the in-process server: a stopped
instance's type changed by one patch that the operator reads as a resize and then as its
confirmation, EC2's refusals, and the attributes Kubenova does not modify."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from kubenova.compute import operations
from kubenova.compute import states as compute_states
from kubenova.conductor.spec_change import SpecChange, wanted
from kubenova.db import models
from kubenova.ec2 import ids
from tests.unit.ec2 import fakes, serving

TINY = {"name": "m1.tiny", "vcpus": 1, "memory_mib": 512, "disk_gib": 1}
SMALL = {"name": "m1.small", "vcpus": 1, "memory_mib": 2048, "disk_gib": 20}


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _stopped(objects, name="web-1", flavor="m1.tiny"):
    return objects.add_instance(
        "team-a", name, phase="Stopped", powerState="Stopped", flavor=flavor
    )


def _record(**values):
    fields = {
        "uuid": "u" * 36,
        "vm_state": compute_states.STOPPED,
        "task_state": None,
        "flavor": TINY,
        "image": {"name": "cirros"},
        "last_reboot_request": None,
        "last_resize_confirm": None,
    }
    fields.update(values)
    return models.Instance(**fields)


def test_a_stopped_instance_is_resized_and_the_resize_confirmed(ec2, objects):
    made = _stopped(objects)
    ec2.modify_instance_attribute(
        InstanceId=ids.instance_id(made), InstanceType={"Value": "m1.small"}
    )
    obj = objects.instance_objects[("team-a", "web-1")]
    assert obj["metadata"]["generation"] == 2
    spec = obj["spec"]
    assert spec["flavor"] == "m1.small"
    assert spec["confirmResize"]["requestedAt"]
    [reservation] = ec2.describe_instances()["Reservations"]
    assert reservation["Instances"][0]["InstanceType"] == "m1.small"
    assert reservation["Instances"][0]["State"]["Name"] == "stopped"

    # The operator's reading of that one spec: first a resize to the new flavor, then, once
    # resized (VerifyResize), the confirmation EC2 clients cannot give.
    change = SpecChange(
        uid="u" * 36, namespace="team-a", name="web-1", generation=2, spec=spec,
        request_id="req", flavor=SMALL, image={"name": "cirros"},
    )  # fmt: skip
    assert wanted(change, _record()).operation is operations.RESIZE
    resized = _record(vm_state=compute_states.RESIZED, flavor=SMALL)
    confirming = wanted(change, resized, resized_from="m1.tiny")
    assert confirming.operation is operations.CONFIRM_RESIZE
    assert operations.CONFIRM_RESIZE.refusal(resized.vm_state, resized.task_state) is None


def test_attribute_and_value_say_the_same(ec2, objects):
    made = _stopped(objects)
    ec2.modify_instance_attribute(
        InstanceId=ids.instance_id(made), Attribute="instanceType", Value="m1.small"
    )
    assert objects.instance_objects[("team-a", "web-1")]["spec"]["flavor"] == "m1.small"


def test_a_second_resize_gets_a_new_confirmation(ec2, objects):
    made = _stopped(objects)
    instance_id = ids.instance_id(made)
    ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": "m1.small"})
    first = objects.instance_objects[("team-a", "web-1")]["spec"]["confirmResize"]
    objects.add_flavor("m1.medium", diskGiB=40)
    ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": "m1.medium"})
    second = objects.instance_objects[("team-a", "web-1")]["spec"]["confirmResize"]
    assert second["requestedAt"] != first["requestedAt"]


def test_the_type_it_has_already_changes_nothing(ec2, objects):
    made = _stopped(objects)
    ec2.modify_instance_attribute(
        InstanceId=ids.instance_id(made), InstanceType={"Value": "m1.tiny"}
    )
    obj = objects.instance_objects[("team-a", "web-1")]
    assert obj["metadata"]["generation"] == 1
    assert "confirmResize" not in obj["spec"]


@pytest.mark.parametrize(
    ("phase", "spec", "status"),
    [
        ("Running", {}, {}),
        ("Running", {"powerState": "Stopped"}, {}),  # stopping
        ("Building", {}, {}),
        ("Paused", {"powerState": "Paused"}, {}),  # EC2's stopped, but not shut off
        ("Suspended", {"powerState": "Suspended"}, {}),
        ("Stopped", {"powerState": "Stopped"}, {"taskState": "resize_prep"}),
        ("VerifyResize", {"powerState": "Stopped"}, {"powerState": "shutdown"}),
        ("Error", {}, {}),
    ],
)
def test_only_a_stopped_instance_changes_type(ec2, objects, phase, spec, status):
    made = objects.add_instance("team-a", "web-1", phase=phase, **spec)
    made["status"].update(status)
    refused = serving.code(
        ec2.modify_instance_attribute,
        InstanceId=ids.instance_id(made),
        InstanceType={"Value": "m1.small"},
    )
    assert refused == "IncorrectInstanceState"
    assert objects.instance_objects[("team-a", "web-1")]["spec"]["flavor"] == "m1.tiny"


def test_a_start_that_gets_in_first_is_seen(ec2, objects):
    made = _stopped(objects)

    def start_first(namespace, name):
        objects.before_write.remove(start_first)
        objects.patch_instance(namespace, name, {"spec": {"powerState": "Running"}})

    objects.before_write.append(start_first)
    refused = serving.code(
        ec2.modify_instance_attribute,
        InstanceId=ids.instance_id(made),
        InstanceType={"Value": "m1.small"},
    )
    # Started meanwhile (the operator has not acted on it yet): pending, not stopped.
    assert refused == "IncorrectInstanceState"
    spec = objects.instance_objects[("team-a", "web-1")]["spec"]
    assert (spec["flavor"], spec["powerState"]) == ("m1.tiny", "Running")


def test_a_status_written_meanwhile_does_not_stop_the_resize(ec2, objects):
    made = _stopped(objects)

    def operator_writes_status(namespace, name):
        objects.before_write.remove(operator_writes_status)
        objects.patch_instance(namespace, name, {"metadata": {"annotations": {"seen": "yes"}}})

    objects.before_write.append(operator_writes_status)
    ec2.modify_instance_attribute(
        InstanceId=ids.instance_id(made), InstanceType={"Value": "m1.small"}
    )
    assert objects.instance_objects[("team-a", "web-1")]["spec"]["flavor"] == "m1.small"


def test_an_unknown_type_or_a_smaller_disk_is_an_invalid_value_naming_the_field(ec2, objects):
    made = _stopped(objects, flavor="m1.small")
    instance_id = ids.instance_id(made)
    for kwargs, field in (
        ({"InstanceType": {"Value": "x9.huge"}}, "InstanceType.Value"),
        ({"Attribute": "instanceType", "Value": "x9.huge"}, "Value"),
        ({"InstanceType": {"Value": "m1.tiny"}}, "InstanceType.Value"),  # 20 GiB to 1
    ):
        with pytest.raises(ClientError) as refused:
            ec2.modify_instance_attribute(InstanceId=instance_id, **kwargs)
        error = refused.value.response["Error"]
        assert error["Code"] == "InvalidParameterValue"
        assert f"parameter {field} is invalid" in error["Message"]
    assert objects.instance_objects[("team-a", "web-1")]["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"UserData": {"Value": b"#!/bin/sh\n"}}, "userData"),
        ({"DisableApiTermination": {"Value": True}}, "disableApiTermination"),
        ({"Attribute": "kernel", "Value": "aki-0123456789abcdef0"}, "kernel"),
        ({"Groups": ["sg-0123456789abcdef0"]}, "groupSet"),
        ({"SourceDestCheck": {"Value": False}}, "sourceDestCheck"),
    ],
)
def test_other_attributes_are_unsupported_by_name(ec2, objects, kwargs, named):
    made = _stopped(objects)
    with pytest.raises(ClientError) as refused:
        ec2.modify_instance_attribute(InstanceId=ids.instance_id(made), **kwargs)
    error = refused.value.response["Error"]
    assert error["Code"] == "UnsupportedOperation"
    assert f"'{named}'" in error["Message"]
    assert objects.instance_objects[("team-a", "web-1")]["metadata"]["generation"] == 1


def test_missing_or_doubled_parameters_are_refused(ec2, objects):
    instance_id = ids.instance_id(_stopped(objects))
    assert serving.code(ec2.modify_instance_attribute, InstanceId=instance_id) == (
        "MissingParameter"
    )
    assert (
        serving.code(
            ec2.modify_instance_attribute, InstanceId=instance_id, Attribute="instanceType"
        )
        == "MissingParameter"
    )
    both = {"Attribute": "instanceType", "Value": "m1.small", "InstanceType": {"Value": "m1.small"}}
    assert serving.code(ec2.modify_instance_attribute, InstanceId=instance_id, **both) == (
        "InvalidParameterCombination"
    )
    assert (
        serving.code(
            ec2.modify_instance_attribute,
            InstanceId=instance_id,
            InstanceType={"Value": "m1.small"},
            DryRun=True,
        )
        == "DryRunOperation"
    )
    assert objects.instance_objects[("team-a", "web-1")]["spec"]["flavor"] == "m1.tiny"


def test_unknown_malformed_and_other_namespaces_instances_are_refused(ec2, objects):
    theirs = objects.add_instance("team-b", "theirs", phase="Stopped", powerState="Stopped")
    small = {"InstanceType": {"Value": "m1.small"}}
    assert serving.code(ec2.modify_instance_attribute, InstanceId="web-1", **small) == (
        "InvalidInstanceID.Malformed"
    )
    for instance_id in ("i-0123456789abcdef0", ids.instance_id(theirs)):
        assert serving.code(ec2.modify_instance_attribute, InstanceId=instance_id, **small) == (
            "InvalidInstanceID.NotFound"
        )
    assert objects.instance_objects[("team-b", "theirs")]["spec"]["flavor"] == "m1.tiny"
