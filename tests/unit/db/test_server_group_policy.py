"""The checks of a server group's policy and its rule, and the group part of a claim. What a
policy allows is placement's rule: tests/unit/test_placement_rules.py."""

from __future__ import annotations

import dataclasses

import pytest

from kubenova.db import api, models, server_groups


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
