import pytest

from kubenova.scheduler.filters.server_group_anti_affinity_filter import (
    ServerGroupAntiAffinityFilter,
)
from tests.unit.scheduler.conftest import group_spec, make_host, make_spec


def test_anti_affinity_rejects_a_host_that_already_has_a_member(context):
    spec = group_spec("anti-affinity", member_hosts={"h1": 1})
    result = ServerGroupAntiAffinityFilter().host_passes(make_host("h1"), spec, context)
    assert (result.passed, result.reason) == (False, "anti-affinity")


def test_anti_affinity_accepts_a_host_without_a_member(context):
    spec = group_spec("anti-affinity", member_hosts={"h1": 1})
    assert ServerGroupAntiAffinityFilter().host_passes(make_host("h2"), spec, context).passed


def test_max_server_per_host_lets_a_host_take_members_up_to_the_limit(context):
    below = group_spec("anti-affinity", member_hosts={"h1": 2}, max_server_per_host=3)
    at = group_spec("anti-affinity", member_hosts={"h1": 3}, max_server_per_host=3)
    assert ServerGroupAntiAffinityFilter().host_passes(make_host("h1"), below, context).passed
    assert not ServerGroupAntiAffinityFilter().host_passes(make_host("h1"), at, context).passed


@pytest.mark.parametrize("policy", ["affinity", "soft-affinity", "soft-anti-affinity"])
def test_other_policies_are_not_hard_anti_affinity(context, policy):
    spec = group_spec(policy, member_hosts={"h1": 5})
    assert ServerGroupAntiAffinityFilter().host_passes(make_host("h1"), spec, context).passed


def test_request_outside_any_group_passes(context):
    assert ServerGroupAntiAffinityFilter().host_passes(make_host(), make_spec(), context).passed
