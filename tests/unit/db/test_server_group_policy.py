"""The server group policy decision a claim makes, and the checks of a policy and its rule."""

from __future__ import annotations

import dataclasses

import pytest

from kubenova.db import api, models, server_groups


@pytest.mark.parametrize(
    ("max_server_per_host", "on_host", "allowed"),
    [
        (None, 0, True),
        (None, 1, False),
        (1, 1, False),
        (3, 2, True),
        (3, 3, False),
        (3, 4, False),
    ],
)
def test_anti_affinity_allows_up_to_max_server_per_host_members_per_host(
    max_server_per_host, on_host, allowed
):
    member_hosts = {"h1": on_host, "h2": 5}

    refusal = server_groups.policy_refusal("anti-affinity", max_server_per_host, member_hosts, "h1")

    assert (refusal is None) is allowed
    if not allowed:
        limit = max_server_per_host or 1
        assert refusal == f"anti-affinity: h1 already holds {on_host} member(s), at most {limit}"


def test_anti_affinity_ignores_members_on_other_hosts():
    assert server_groups.policy_refusal("anti-affinity", None, {"h2": 9, "h3": 1}, "h1") is None


@pytest.mark.parametrize(
    ("member_hosts", "refusal"),
    [
        ({}, None),
        ({"h1": 3}, None),
        ({"h1": 1, "h2": 0}, None),
        ({"h2": 1}, "affinity: members are on h2, not on h1"),
        ({"h1": 1, "h3": 1, "h2": 2}, "affinity: members are on h2, h3, not on h1"),
    ],
)
def test_affinity_allows_only_the_host_the_members_are_on(member_hosts, refusal):
    assert server_groups.policy_refusal("affinity", None, member_hosts, "h1") == refusal


@pytest.mark.parametrize("policy", ["soft-affinity", "soft-anti-affinity"])
def test_soft_policies_never_refuse(policy):
    crowded = {"h1": 50, "h2": 50}

    assert server_groups.policy_refusal(policy, None, crowded, "h1") is None
    assert server_groups.policy_refusal(policy, None, crowded, "h3") is None


@pytest.mark.parametrize(
    ("policy", "max_server_per_host"),
    [
        ("affinity", None),
        ("anti-affinity", None),
        ("anti-affinity", 1),
        ("anti-affinity", 10),
        ("soft-affinity", None),
        ("soft-anti-affinity", None),
    ],
)
def test_nova_policies_and_rules_are_accepted(policy, max_server_per_host):
    server_groups.validate_policy(policy, max_server_per_host)


@pytest.mark.parametrize(
    ("policy", "max_server_per_host", "message"),
    [
        ("spread", None, "unknown server group policy 'spread'"),
        ("Affinity", None, "unknown server group policy"),
        ("anti-affinity", 0, "at least 1, not 0"),
        ("anti-affinity", -2, "at least 1"),
        ("affinity", 2, "anti-affinity policy only, not to affinity"),
        ("soft-anti-affinity", 2, "anti-affinity policy only"),
    ],
)
def test_other_policies_and_misplaced_rules_are_refused(policy, max_server_per_host, message):
    with pytest.raises(ValueError, match=message):
        server_groups.validate_policy(policy, max_server_per_host)


def test_the_four_policies_are_novas_and_two_of_them_are_hard():
    assert set(models.SERVER_GROUP_POLICIES) == {
        "affinity",
        "anti-affinity",
        "soft-affinity",
        "soft-anti-affinity",
    }
    assert sorted(server_groups.HARD_POLICIES) == ["affinity", "anti-affinity"]


def test_a_claim_is_frozen_and_built_from_a_group_record():
    group = models.ServerGroup(id=7, policy="anti-affinity", max_server_per_host=2)

    claim = api.ServerGroupClaim.from_group(group)

    assert claim == api.ServerGroupClaim(group_id=7, policy="anti-affinity", max_server_per_host=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.policy = "affinity"  # type: ignore[misc]


def test_every_exported_name_exists():
    missing = [name for name in api.__all__ if not hasattr(api, name)]

    assert missing == []
    assert len(set(api.__all__)) == len(api.__all__)
