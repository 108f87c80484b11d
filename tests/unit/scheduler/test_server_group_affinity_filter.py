import pytest

from kubenova.scheduler.filters.server_group_affinity_filter import ServerGroupAffinityFilter
from tests.unit.scheduler.conftest import group_spec, make_host, make_spec


def test_first_member_of_an_affinity_group_goes_anywhere(context):
    spec = group_spec("affinity", member_hosts={})
    assert ServerGroupAffinityFilter().host_passes(make_host("h1"), spec, context).passed


def test_affinity_accepts_a_host_that_already_has_a_member(context):
    spec = group_spec("affinity", member_hosts={"h1": 2})
    assert ServerGroupAffinityFilter().host_passes(make_host("h1"), spec, context).passed


def test_affinity_rejects_a_host_without_a_member_once_the_group_has_one(context):
    spec = group_spec("affinity", member_hosts={"h1": 1})
    result = ServerGroupAffinityFilter().host_passes(make_host("h2"), spec, context)
    assert (result.passed, result.reason) == (False, "affinity")


def test_a_host_recorded_with_zero_members_does_not_anchor_the_group(context):
    spec = group_spec("affinity", member_hosts={"h1": 0})
    assert ServerGroupAffinityFilter().host_passes(make_host("h2"), spec, context).passed
    assert ServerGroupAffinityFilter().host_passes(make_host("h1"), spec, context).passed


@pytest.mark.parametrize("policy", ["anti-affinity", "soft-affinity", "soft-anti-affinity"])
def test_other_policies_are_not_hard_affinity(context, policy):
    spec = group_spec(policy, member_hosts={"h1": 1})
    assert ServerGroupAffinityFilter().host_passes(make_host("h2"), spec, context).passed


def test_request_outside_any_group_passes(context):
    assert ServerGroupAffinityFilter().host_passes(make_host(), make_spec(), context).passed
