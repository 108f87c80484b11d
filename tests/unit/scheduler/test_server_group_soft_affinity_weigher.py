import pytest

from kubenova.scheduler.weighers.server_group_soft_affinity_weigher import (
    ServerGroupSoftAffinityWeigher,
)
from tests.unit.scheduler.conftest import group_spec, make_host, ranked

HOSTS = [make_host("none"), make_host("one"), make_host("three")]
MEMBERS = {"one": 1, "three": 3}


def test_soft_affinity_prefers_the_host_with_the_most_members():
    spec = group_spec("soft-affinity", member_hosts=MEMBERS)
    assert ServerGroupSoftAffinityWeigher().multiplier == 1.0
    assert ranked(ServerGroupSoftAffinityWeigher(), HOSTS, spec) == ["three", "one", "none"]


def test_raw_weight_is_the_number_of_members_on_the_host():
    spec = group_spec("soft-affinity", member_hosts=MEMBERS)
    weights = [ServerGroupSoftAffinityWeigher().weigh(host, spec) for host in HOSTS]
    assert weights == [0.0, 1.0, 3.0]


@pytest.mark.parametrize("policy", ["affinity", "anti-affinity", "soft-anti-affinity"])
def test_other_policies_get_no_soft_affinity_weight(policy):
    spec = group_spec(policy, member_hosts=MEMBERS)
    assert [ServerGroupSoftAffinityWeigher().weigh(host, spec) for host in HOSTS] == [0.0] * 3
    # Equal weights leave the order to the host name.
    assert ranked(ServerGroupSoftAffinityWeigher(), HOSTS, spec) == ["none", "one", "three"]
