import pytest

from kubenova.scheduler.host_state import RequestSpec, ServerGroupSpec
from tests.unit.scheduler.conftest import make_host


def test_request_spec_keeps_working_with_only_the_resources():
    spec = RequestSpec("uuid", 1, 512, 1)
    assert spec.availability_zone is None
    assert dict(spec.node_selector) == {}
    assert dict(spec.flavor_extra_specs) == {}
    assert spec.image_architecture is None
    assert spec.image_hypervisor_type is None
    assert spec.server_group is None
    assert spec.forced_host is None
    assert spec.ignore_hosts == frozenset()


def test_availability_zone_is_the_zone_label_or_nova():
    assert make_host(labels={"topology.kubernetes.io/zone": "az1"}).availability_zone == "az1"
    assert make_host(labels={"rack": "r1"}).availability_zone == "nova"


def test_server_group_refuses_an_unknown_policy():
    with pytest.raises(ValueError, match="unknown policy 'affinty'"):
        ServerGroupSpec(name="g", policy="affinty")  # type: ignore[arg-type]


def test_server_group_refuses_a_max_server_per_host_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        ServerGroupSpec(name="g", policy="anti-affinity", max_server_per_host=0)


def test_server_group_occupied_hosts_leave_out_hosts_with_no_members():
    group = ServerGroupSpec(name="g", policy="affinity", member_hosts={"h1": 2, "h2": 0})
    assert group.occupied_hosts == frozenset({"h1"})
    assert (group.members_on("h1"), group.members_on("h2"), group.members_on("h3")) == (2, 0, 0)
