"""Placement's rules (kubenova.placement), which the scheduler's filters, the database claim and
the Hypervisor status all ask: how much of a host can be allocated, which resource a request
is short of, and what a server group's policy allows."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from kubenova import placement
from kubenova.db import models
from kubenova.scheduler.host_state import HostState

# -- allocatable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "reserved", "ratio", "allocatable"),
    [
        (8, 0, 4.0, 32.0),
        (8192, 512, 1.0, 7680.0),
        (2048, 0, 1.5, 3072.0),
        (4096, 1024, 1.5, 4608.0),
        (100, 100, 2.0, 0.0),
    ],
)
def test_allocatable_is_capacity_less_reserved_times_the_ratio(
    capacity, reserved, ratio, allocatable
):
    assert placement.allocatable(capacity, reserved, ratio) == allocatable


def test_allocatable_of_columns_is_the_sql_of_the_same_formula():
    nodes = models.table(models.ComputeNode)

    expression = placement.allocatable(
        nodes.c.memory_mib, nodes.c.reserved_host_memory_mib, nodes.c.ram_allocation_ratio
    )

    assert str(expression) == (
        "(compute_nodes.memory_mib - compute_nodes.reserved_host_memory_mib)"
        " * compute_nodes.ram_allocation_ratio"
    )


def test_allocatable_computed_by_a_database_equals_allocatable_computed_in_python():
    rows = [(8192, 512, 1.5), (100, 10, 1.1), (3, 0, 4.0), (4096, 4096, 1.0)]
    table = sa.Table(
        "nodes",
        sa.MetaData(),
        sa.Column("capacity", sa.Integer),
        sa.Column("reserved", sa.Integer),
        sa.Column("ratio", sa.Double),
    )
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(
            table.insert(), [{"capacity": c, "reserved": r, "ratio": x} for c, r, x in rows]
        )
        in_sql = conn.scalars(
            sa.select(placement.allocatable(table.c.capacity, table.c.reserved, table.c.ratio))
        ).all()
    engine.dispose()

    assert in_sql == [placement.allocatable(c, r, x) for c, r, x in rows]


def test_a_host_states_free_room_is_allocatable_less_what_is_used():
    host = HostState(
        host="h1",
        vcpus=4,
        vcpus_used=3,
        memory_mib=4096,
        memory_mib_used=1000,
        disk_gib=100,
        disk_gib_used=20,
        cpu_allocation_ratio=2.0,
        ram_allocation_ratio=1.5,
        disk_allocation_ratio=0.5,
        reserved_host_memory_mib=512,
        reserved_host_disk_gib=10,
    )

    # vCPUs have no reservation: 4 x 2.0 - 3; (4096 - 512) x 1.5 - 1000; (100 - 10) x 0.5 - 20.
    assert (host.free_vcpus, host.free_memory_mib, host.free_disk_gib) == (5.0, 4376.0, 25.0)


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory_fits", "vcpus_fit", "disk_fits"), list(itertools.product([True, False], repeat=3))
)
def test_the_first_missing_resource_is_named_memory_then_vcpu_then_disk(
    memory_fits, vcpus_fit, disk_fits
):
    missing = placement.missing_resource(
        memory_fits=memory_fits, vcpus_fit=vcpus_fit, disk_fits=disk_fits
    )

    expected = next(
        (
            refusal
            for fits, refusal in (
                (memory_fits, placement.REFUSED_NO_MEMORY),
                (vcpus_fit, placement.REFUSED_NO_VCPU),
                (disk_fits, placement.REFUSED_NO_DISK),
            )
            if not fits
        ),
        None,
    )
    assert missing == expected


def test_refusals_are_the_words_the_scheduler_counts():
    assert (
        placement.REFUSED_NO_MEMORY,
        placement.REFUSED_NO_VCPU,
        placement.REFUSED_NO_DISK,
        placement.REFUSED_DISABLED,
        placement.REFUSED_UNKNOWN_HOST,
    ) == (
        "insufficient memory",
        "insufficient vcpu",
        "insufficient disk",
        "disabled",
        "not registered",
    )


# -- server group policies ---------------------------------------------------------------


def test_the_four_policies_are_novas_in_novas_order_and_two_of_them_are_hard():
    assert placement.SERVER_GROUP_POLICIES == (
        "affinity",
        "anti-affinity",
        "soft-affinity",
        "soft-anti-affinity",
    )
    assert sorted(placement.HARD_POLICIES) == ["affinity", "anti-affinity"]


@pytest.mark.parametrize(
    ("members_on_host", "max_server_per_host", "allowed"),
    [
        (0, None, True),
        (1, None, False),
        (0, 1, True),
        (1, 1, False),
        (2, 3, True),
        (3, 3, False),
        (4, 3, False),
    ],
)
def test_anti_affinity_allows_a_member_while_the_host_holds_fewer_than_the_limit(
    members_on_host, max_server_per_host, allowed
):
    assert placement.anti_affinity_allows(members_on_host, max_server_per_host) is allowed


@pytest.mark.parametrize(
    ("occupied_hosts", "host", "allowed"),
    [
        (set(), "h1", True),
        ({"h1"}, "h1", True),
        ({"h1"}, "h2", False),
        ({"h1", "h2"}, "h2", True),
        ({"h1", "h2"}, "h3", False),
    ],
)
def test_affinity_allows_the_first_member_anywhere_and_later_ones_with_the_others(
    occupied_hosts, host, allowed
):
    assert placement.affinity_allows(occupied_hosts, host) is allowed


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
def test_anti_affinity_refuses_a_host_holding_max_server_per_host_members(
    max_server_per_host, on_host, allowed
):
    member_hosts = {"h1": on_host, "h2": 5}

    refusal = placement.policy_refusal("anti-affinity", max_server_per_host, member_hosts, "h1")

    assert (refusal is None) is allowed
    if not allowed:
        limit = max_server_per_host or 1
        assert refusal == f"anti-affinity: h1 already holds {on_host} member(s), at most {limit}"


def test_anti_affinity_ignores_members_on_other_hosts():
    assert placement.policy_refusal("anti-affinity", None, {"h2": 9, "h3": 1}, "h1") is None


@pytest.mark.parametrize(
    ("member_hosts", "refusal"),
    [
        ({}, None),
        ({"h1": 3}, None),
        ({"h1": 1, "h2": 0}, None),
        ({"h2": 0}, None),
        ({"h2": 1}, "affinity: members are on h2, not on h1"),
        ({"h3": 1, "h2": 2}, "affinity: members are on h2, h3, not on h1"),
        # A host holding a member takes another, as the ServerGroupAffinityFilter passes it.
        ({"h1": 1, "h3": 1, "h2": 2}, None),
    ],
)
def test_affinity_refuses_a_host_that_holds_none_of_the_members(member_hosts, refusal):
    assert placement.policy_refusal("affinity", None, member_hosts, "h1") == refusal


@pytest.mark.parametrize("policy", ["soft-affinity", "soft-anti-affinity"])
def test_soft_policies_never_refuse(policy):
    crowded = {"h1": 50, "h2": 50}

    assert placement.policy_refusal(policy, None, crowded, "h1") is None
    assert placement.policy_refusal(policy, None, crowded, "h3") is None
