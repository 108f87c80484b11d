"""RunInstances' two capacity errors through the real boto3 against the in-process server:
InsufficientInstanceCapacity with the scheduler's explanation when the Hypervisors (as the
conductor writes their status) would not take MinCount instances, and InstanceLimitExceeded
when a ResourceQuota on Instances leaves room for fewer, refused as the kube-apiserver's quota
admission refuses. Neither makes anything."""

from __future__ import annotations

import datetime
import json

import pytest
from botocore.exceptions import ClientError
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import capacity, ids
from kubenova.scheduler.host_state import HostState
from tests.unit.ec2 import fake_capacity, fakes, serving

COUNT = fake_capacity.INSTANCE_COUNT


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _ami(objects: fakes.FakeCluster) -> str:
    return ids.image_id(objects.image_objects["cirros"])


def _refusal(call, **kwargs) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    response = refused.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def _run(ec2, objects, flavor="m1.tiny", minimum=1, maximum=None, **more):
    return ec2.run_instances(
        ImageId=_ami(objects),
        InstanceType=flavor,
        MinCount=minimum,
        MaxCount=maximum or minimum,
        **more,
    )


# -- InsufficientInstanceCapacity --------------------------------------------------------


def test_a_flavor_larger_than_any_host_is_insufficient_capacity_naming_the_reason(ec2, objects):
    # h1 has 8 vCPUs at the default ratio of 4: 32 allocatable; h2 is down.
    objects.add_flavor("x1.huge", vcpus=64, memoryMiB=1024, diskGiB=1)
    code, message, status = _refusal(
        ec2.run_instances, ImageId=_ami(objects), InstanceType="x1.huge", MinCount=1, MaxCount=1
    )
    assert (code, status) == ("InsufficientInstanceCapacity", 500)
    assert message.endswith("(room for 0): 0/2 hosts: 1 insufficient vcpu, 1 down")
    assert "x1.huge" in message
    assert objects.instances("team-a") == []


def test_fewer_than_min_count_fitting_makes_nothing_and_says_how_many_fit(ec2, objects):
    objects.add_flavor("c1.half", vcpus=16, memoryMiB=1024, diskGiB=1)
    code, message, _ = _refusal(
        ec2.run_instances, ImageId=_ami(objects), InstanceType="c1.half", MinCount=3, MaxCount=3
    )
    assert code == "InsufficientInstanceCapacity"
    # Two fill h1; the third would find it full, as the scheduler would say.
    assert message.endswith(
        "for 3 instance(s) (room for 2): 0/2 hosts: 1 insufficient vcpu, 1 down"
    )
    assert objects.instances("team-a") == []


def test_as_many_as_fit_up_to_max_count_are_made_once_min_count_fits(ec2, objects):
    objects.add_flavor("c1.half", vcpus=16, memoryMiB=1024, diskGiB=1)
    made = _run(ec2, objects, "c1.half", minimum=1, maximum=5)["Instances"]
    assert [i["AmiLaunchIndex"] for i in made] == [0, 1]
    assert len(objects.instances("team-a")) == 2


def test_what_the_hosts_already_hold_counts(ec2, objects):
    objects.hypervisor_objects = [fake_capacity.hypervisor("h1", used=(30, 0, 0))]
    objects.add_flavor("c1.four", vcpus=4, memoryMiB=1024, diskGiB=1)
    code, message, _ = _refusal(_run, ec2=ec2, objects=objects, flavor="c1.four")
    assert code == "InsufficientInstanceCapacity"
    assert message.endswith("(room for 0): 0/1 hosts: 1 insufficient vcpu")
    objects.hypervisor_objects = [fake_capacity.hypervisor("h1", used=(28, 0, 0))]
    assert len(_run(ec2, objects, "c1.four")["Instances"]) == 1


def test_instances_are_packed_across_every_host_that_passes(ec2, objects):
    objects.hypervisor_objects = [
        fake_capacity.hypervisor(name, vcpus=1, memory_mib=4096) for name in ("h1", "h2", "h3")
    ]
    objects.add_flavor("m1.big", vcpus=1, memoryMiB=2048, diskGiB=1)
    # Each host has 3584 MiB allocatable (512 reserved): one m1.big each.
    assert len(_run(ec2, objects, "m1.big", minimum=3)["Instances"]) == 3
    code, message, _ = _refusal(_run, ec2=ec2, objects=objects, flavor="m1.big", minimum=4)
    assert code == "InsufficientInstanceCapacity"
    assert message.endswith("(room for 3): 0/3 hosts: 3 insufficient memory")


def test_the_zone_asked_for_narrows_the_hosts(ec2, objects):
    code, message, _ = _refusal(
        _run, ec2=ec2, objects=objects, Placement={"AvailabilityZone": "az-2"}
    )
    assert code == "InsufficientInstanceCapacity"
    assert "in the availability zone az-2" in message
    assert message.endswith("0/2 hosts: 1 availability zone, 1 down")
    objects.hypervisor_objects.append(fake_capacity.hypervisor("h3", zone="az-2"))
    [made] = _run(ec2, objects, Placement={"AvailabilityZone": "az-2"})["Instances"]
    assert made["Placement"]["AvailabilityZone"] == "az-2"


def _zones(ec2) -> list[str]:
    return [zone["ZoneName"] for zone in ec2.describe_availability_zones()["AvailabilityZones"]]


def test_a_zone_no_host_is_in_is_an_invalid_value_naming_it_and_makes_nothing(ec2, objects):
    assert "az-9" not in _zones(ec2)
    code, message, status = _refusal(
        _run, ec2=ec2, objects=objects, Placement={"AvailabilityZone": "az-9"}, ClientToken="t1"
    )
    assert (code, status) == ("InvalidParameterValue", 400)
    assert message.startswith("Invalid availability zone: [az-9]")
    assert "Placement.AvailabilityZone" in message
    assert "the zones are az-2, nova" in message  # as DescribeAvailabilityZones lists them
    assert objects.instances("team-a") == []
    # A host labelled into the zone makes it one that is listed, and launched into.
    objects.hypervisor_objects.append(fake_capacity.hypervisor("h3", zone="az-9"))
    assert "az-9" in _zones(ec2)
    [made] = _run(ec2, objects, Placement={"AvailabilityZone": "az-9"})["Instances"]
    assert made["Placement"]["AvailabilityZone"] == "az-9"


def test_a_zone_that_is_there_but_full_stays_insufficient_capacity(ec2, objects):
    objects.hypervisor_objects.append(fake_capacity.hypervisor("h3", zone="az-3", used=(32, 0, 0)))
    assert "az-3" in _zones(ec2)
    code, message, _ = _refusal(
        _run, ec2=ec2, objects=objects, Placement={"AvailabilityZone": "az-3"}
    )
    assert code == "InsufficientInstanceCapacity"
    assert message.endswith("0/3 hosts: 1 availability zone, 1 down, 1 insufficient vcpu")
    assert objects.instances("team-a") == []


def test_the_default_zone_is_known_only_while_a_host_is_in_it(ec2, objects):
    # h1 has no zone label: it is in "nova", as the scheduler places it.
    [made] = _run(ec2, objects, Placement={"AvailabilityZone": "nova"})["Instances"]
    assert made["Placement"]["AvailabilityZone"] == "nova"
    objects.hypervisor_objects = []
    code, message, _ = _refusal(
        _run, ec2=ec2, objects=objects, Placement={"AvailabilityZone": "nova"}
    )
    assert code == "InvalidParameterValue"
    assert message.endswith("the zones are none: no hypervisor has registered)")
    assert len(objects.instances("team-a")) == 1


def test_disabled_hosts_and_unmatched_flavor_specs_and_image_properties_count_as_rejections(
    ec2, objects
):
    objects.hypervisor_objects = [
        fake_capacity.hypervisor("h1", disabled=True),
        fake_capacity.hypervisor("h2"),
        fake_capacity.hypervisor("h3"),
    ]
    objects.hypervisor_objects[2]["metadata"]["labels"]["gpu"] = "a100"
    objects.add_flavor("g1.large")
    objects.flavor_objects["g1.large"]["spec"]["extraSpecs"] = {"gpu": "a100"}
    objects.image_objects["cirros"]["spec"]["architecture"] = "aarch64"
    code, message, _ = _refusal(_run, ec2=ec2, objects=objects, flavor="g1.large")
    assert code == "InsufficientInstanceCapacity"
    # Each host counted once, under the first of the scheduler's filters that rejects it.
    assert message.endswith("0/3 hosts: 1 disabled, 1 flavor extra specs, 1 image properties")
    assert objects.instances("team-a") == []


def test_no_hypervisor_at_all_says_so(ec2, objects):
    objects.hypervisor_objects = []
    code, message, _ = _refusal(_run, ec2=ec2, objects=objects)
    assert (code, message.rpartition("): ")[2]) == (
        "InsufficientInstanceCapacity",
        "0/0 hosts: no hypervisor has registered",
    )


def test_a_hosts_status_is_read_as_the_scheduler_reads_its_compute_node():
    # The same compute node, as the scheduler loads it from the database and as the
    # conductor shows it in the Hypervisor's status: the same room.
    now = datetime.datetime.now(datetime.UTC)
    node = HostState(
        host="h1",
        vcpus=6,
        vcpus_used=5,
        memory_mib=10000,
        memory_mib_used=3000,
        disk_gib=300,
        disk_gib_used=20,
        cpu_allocation_ratio=4.0,
        ram_allocation_ratio=1.0,
        reserved_host_memory_mib=512,
    )
    shown = fake_capacity.hypervisor(
        "h1", vcpus=6, memory_mib=10000, disk_gib=300, used=(5, 3000, 20)
    )
    read = capacity.host_state(shown, now)
    assert (read.free_vcpus, read.free_memory_mib, read.free_disk_gib) == (
        node.free_vcpus,
        node.free_memory_mib,
        node.free_disk_gib,
    )
    assert read.is_up(now, 60)
    assert (read.cpu_arch, read.hypervisor_type, read.virt_type) == ("x86_64", "QEMU", "kvm")
    assert not capacity.host_state(fake_capacity.hypervisor("h2", up=False), now).is_up(now, 60)


# -- InstanceLimitExceeded ---------------------------------------------------------------


def test_a_quota_of_one_instance_refuses_the_second_with_the_quotas_message(ec2, objects):
    objects.add_quota("team-a", "instances", 1)
    _run(ec2, objects)
    code, message, status = _refusal(_run, ec2=ec2, objects=objects)
    assert (code, status) == ("InstanceLimitExceeded", 400)
    assert message == (
        f"exceeded quota: instances, requested: {COUNT}=1, used: {COUNT}=1, limited: {COUNT}=1"
    )
    assert len(objects.instances("team-a")) == 1


def test_a_quota_allowing_fewer_than_min_count_makes_nothing(ec2, objects):
    objects.add_quota("team-a", "instances", 3)
    code, message, _ = _refusal(_run, ec2=ec2, objects=objects, minimum=4)
    assert code == "InstanceLimitExceeded"
    assert message == (
        f"exceeded quota: instances, requested: {COUNT}=4, used: {COUNT}=0, limited: {COUNT}=3"
    )
    assert objects.instances("team-a") == []


def test_a_quota_allowing_fewer_than_max_count_makes_what_it_allows(ec2, objects):
    objects.add_quota("team-a", "roomy", 10)
    objects.add_quota("team-a", "tight", 3)
    made = _run(ec2, objects, minimum=1, maximum=5)["Instances"]
    assert [i["AmiLaunchIndex"] for i in made] == [0, 1, 2]
    assert len(objects.instances("team-a")) == 3


def test_quotas_of_other_namespaces_and_scoped_quotas_do_not_limit_instances(ec2, objects):
    objects.add_quota("team-b", "instances", 0)
    objects.add_quota("team-a", "terminating-only", 0, scopes=["Terminating"])
    assert len(_run(ec2, objects, minimum=2)["Instances"]) == 2


def test_a_retry_with_its_client_token_answers_with_what_it_made_even_at_the_limit(ec2, objects):
    objects.add_quota("team-a", "instances", 1)
    first = _run(ec2, objects, ClientToken="deploy-7")
    again = _run(ec2, objects, ClientToken="deploy-7")
    assert [i["InstanceId"] for i in again["Instances"]] == [
        i["InstanceId"] for i in first["Instances"]
    ]


def test_the_kube_apiservers_quota_refusal_is_instance_limit_exceeded(ec2, objects):
    # Another writer takes the room after the quotas were read: admission refuses.
    objects.add_quota("team-a", "instances", 2)
    objects.resource_quotas = lambda namespace: []
    made = _run(ec2, objects, minimum=1, maximum=3)["Instances"]
    assert len(made) == 2  # as many as the limit allows, MinCount being met
    code, message, _ = _refusal(_run, ec2=ec2, objects=objects)
    assert code == "InstanceLimitExceeded"
    assert message == (
        f"exceeded quota: instances, requested: {COUNT}=1, used: {COUNT}=2, limited: {COUNT}=2"
    )


def test_a_quota_refusal_before_min_count_is_the_answer(ec2, objects):
    objects.add_quota("team-a", "instances", 1)
    objects.resource_quotas = lambda namespace: []
    code, _, _ = _refusal(_run, ec2=ec2, objects=objects, minimum=2)
    assert code == "InstanceLimitExceeded"


def test_another_forbidden_create_stays_unauthorized(ec2, objects):
    def forbidden(namespace, body):
        refused = k8s_exceptions.ApiException(status=403, reason="Forbidden")
        refused.body = json.dumps(
            {
                "kind": "Status",
                "status": "Failure",
                "message": 'instances.compute.kubenova.io is forbidden: User "system:'
                'serviceaccount:kubenova-system:ec2" cannot create resource "instances"',
                "reason": "Forbidden",
                "code": 403,
            }
        )
        raise refused

    objects.create_instance = forbidden
    code, message, status = _refusal(_run, ec2=ec2, objects=objects)
    assert (code, status) == ("UnauthorizedOperation", 403)
    assert "cannot create resource" in message
