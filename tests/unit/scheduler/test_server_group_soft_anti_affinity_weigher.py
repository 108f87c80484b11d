import pytest

from kubenova.scheduler.weighers.server_group_soft_anti_affinity_weigher import (
    ServerGroupSoftAntiAffinityWeigher,
)
from tests.unit.scheduler.conftest import group_spec, make_host, ranked

HOSTS = [make_host("a-three"), make_host("b-one"), make_host("c-none")]
MEMBERS = {"a-three": 3, "b-one": 1}


def test_soft_anti_affinity_prefers_the_host_with_the_fewest_members():
    spec = group_spec("soft-anti-affinity", member_hosts=MEMBERS)
    assert ServerGroupSoftAntiAffinityWeigher().multiplier == 1.0
    assert ranked(ServerGroupSoftAntiAffinityWeigher(), HOSTS, spec) == [
        "c-none",
        "b-one",
        "a-three",
    ]


def test_soft_anti_affinity_still_places_when_every_host_has_members():
    spec = group_spec("soft-anti-affinity", member_hosts={"a-three": 3, "b-one": 1, "c-none": 2})
    assert ranked(ServerGroupSoftAntiAffinityWeigher(), HOSTS, spec)[0] == "b-one"


@pytest.mark.parametrize("policy", ["affinity", "anti-affinity", "soft-affinity"])
def test_other_policies_get_no_soft_anti_affinity_weight(policy):
    spec = group_spec(policy, member_hosts=MEMBERS)
    assert [ServerGroupSoftAntiAffinityWeigher().weigh(host, spec) for host in HOSTS] == [0.0] * 3
