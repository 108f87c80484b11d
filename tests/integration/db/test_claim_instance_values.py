"""A claim records the build with it: ``claim_resources(..., instance_values=...)`` sets the
instance's host, node and the given columns in one UPDATE of the claim's transaction, and a
refused claim leaves the instance's row as it was. The conductor's claim, which the scheduler
calls for each host it tries, records the build's states, attempt and zone this way."""

from __future__ import annotations

import types
import uuid as uuidlib
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor import request_spec
from kubenova.db import api, models
from kubenova.db import engine as db_engine
from kubenova.scheduler.filters import compute_filter, resource_filter
from kubenova.scheduler.host_manager import load_host_states
from kubenova.scheduler.host_state import RequestSpec
from kubenova.scheduler.manager import SchedulerManager
from kubenova.scheduler.weighers.ram_weigher import RAMWeigher
from tests.integration.db.helpers import (
    FLAVOR,
    IMAGE,
    LONG_AGO,
    age_instance,
    allocations_of,
    make_group,
    make_host,
    make_instance,
    node,
    recorded_statements,
)

pytestmark = pytest.mark.integration


# What the conductor records with the claim of a first build (conductor/compute_tasks.py).
FIRST_BUILD: dict[str, Any] = {
    "vm_state": "building",
    "task_state": "spawning",
    "power_state": "nostate",
    "attempts": 1,
    "availability_zone": "az1",
}

# The columns a claim may write, read back to tell whether it wrote them.
COLUMNS = (
    "host",
    "node",
    "vm_state",
    "task_state",
    "power_state",
    "attempts",
    "alternates",
    "tried_hosts",
    "availability_zone",
    "request_id",
    "updated_at",
)


def _row(session_factory: db_engine.SessionFactory, uuid: str) -> dict[str, Any]:
    """A fresh read of the instance's claimable columns (soft-deleted rows included)."""
    with db_engine.transaction(session_factory) as session:
        found = api.instance_get(session, uuid, read_deleted=True)
        assert found is not None
        return {column: getattr(found, column) for column in COLUMNS}


def _allocations(session_factory: db_engine.SessionFactory, uuid: str) -> list[tuple[str, int]]:
    with db_engine.transaction(session_factory) as session:
        held = allocations_of(session, uuid)
    return sorted((a.resource_class, a.used) for a in held)


def _claim(
    session_factory: db_engine.SessionFactory,
    uuid: str,
    host: str,
    values: Any,
    *,
    group: models.ServerGroup | None = None,
    vcpus: int = 1,
) -> bool:
    """Claim ``vcpus`` vCPUs, 512 MiB and 1 GiB on ``host`` with ``values``."""
    return api.claim_resources(
        session_factory,
        uuid,
        host,
        vcpus,
        512,
        1,
        server_group=api.ServerGroupClaim.from_group(group) if group is not None else None,
        instance_values=values,
    )


def _usage(session_factory: db_engine.SessionFactory, host: str) -> tuple[int, int, int, int]:
    n = node(session_factory, host)
    return (n.vcpus_used, n.memory_mib_used, n.local_gb_used, n.generation)


@pytest.fixture
def h1(db_session_factory: db_engine.SessionFactory) -> str:
    """Host h1, room for 16 instances of 1 vCPU, whose node is named h1.example."""
    make_host(
        db_session_factory,
        "h1",
        vcpus=4,
        memory_mib=8192,
        local_gb=100,
        hypervisor_hostname="h1.example",
    )
    return "h1"


@pytest.fixture
def aged_instance(db_session_factory: db_engine.SessionFactory) -> str:
    """A new instance, as the api handler records it, last updated long ago."""
    uuid = make_instance(db_session_factory, availability_zone="az-created")
    age_instance(db_session_factory, uuid)
    return uuid


EXPECTED_NEW = {
    "host": None,
    "node": None,
    "vm_state": "building",
    "task_state": "scheduling",
    "power_state": "nostate",
    "attempts": 0,
    "alternates": None,
    "tried_hosts": None,
    "availability_zone": "az-created",
    "updated_at": LONG_AGO,
}


def _assert_new(row: dict[str, Any]) -> None:
    """The row is as the api handler recorded it (and _age left it)."""
    assert {k: v for k, v in row.items() if k != "request_id"} == EXPECTED_NEW


# -- a successful claim --------------------------------------------------------------------


def test_a_claim_sets_host_node_and_the_given_values_in_one_go(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    bystander = make_instance(db_session_factory)
    age_instance(db_session_factory, bystander)
    before_bystander = _row(db_session_factory, bystander)

    assert _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD))

    row = _row(db_session_factory, aged_instance)
    assert (row["host"], row["node"]) == ("h1", "h1.example")
    assert (row["task_state"], row["attempts"], row["availability_zone"]) == ("spawning", 1, "az1")
    # Columns not given are kept.
    assert (row["alternates"], row["tried_hosts"]) == (None, None)
    assert row["request_id"] == f"req-{aged_instance}"
    assert row["updated_at"] > LONG_AGO
    assert _allocations(db_session_factory, aged_instance) == [
        (models.DISK_GB, 1),
        (models.MEMORY_MB, 512),
        (models.VCPU, 1),
    ]
    assert _usage(db_session_factory, h1)[:3] == (1, 512, 1)
    # The UPDATE matched this instance's row only.
    assert _row(db_session_factory, bystander) == before_bystander


def test_a_claim_without_values_sets_only_host_and_node(
    db_session_factory: db_engine.SessionFactory, h1: str
) -> None:
    no_values: tuple[dict[str, Any] | None, ...] = (None, {})
    for values in no_values:
        uuid = make_instance(db_session_factory, availability_zone="az-created")
        age_instance(db_session_factory, uuid)

        assert _claim(db_session_factory, uuid, h1, values)

        row = _row(db_session_factory, uuid)
        assert (row["host"], row["node"]) == ("h1", "h1.example")
        assert row["updated_at"] > LONG_AGO
        assert {k: row[k] for k in ("task_state", "attempts", "alternates")} == {
            "task_state": "scheduling",
            "attempts": 0,
            "alternates": None,
        }
        assert row["availability_zone"] == "az-created"


def test_a_claim_into_a_server_group_sets_the_values_and_makes_a_member(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    group = make_group(db_session_factory, "anti-affinity")

    assert _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD), group=group)

    row = _row(db_session_factory, aged_instance)
    assert (row["host"], row["task_state"], row["attempts"]) == ("h1", "spawning", 1)
    with db_engine.transaction(db_session_factory) as session:
        assert api.server_group_member_hosts(session, group.id) == {"h1": 1}


def test_the_callers_values_and_tried_hosts_list_stay_the_callers(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    tried = [{"host": "h2", "reason": "disk on fire"}]
    given = {"task_state": "spawning", "tried_hosts": tried}
    # A read-only mapping: the claim must copy it before checking (which rewrites lists).
    values = types.MappingProxyType(given)

    assert _claim(db_session_factory, aged_instance, h1, values)
    tried.append({"host": "h3", "reason": "no network"})

    assert given["tried_hosts"] is tried
    assert len(tried) == 2
    assert _row(db_session_factory, aged_instance)["tried_hosts"] == [
        {"host": "h2", "reason": "disk on fire"}
    ]


# -- a repeated claim ----------------------------------------------------------------------


def test_a_repeated_claim_applies_its_values_and_holds_one_set_of_allocations(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    assert _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD))
    usage = _usage(db_session_factory, h1)
    age_instance(db_session_factory, aged_instance)

    again = {"task_state": "networking", "attempts": 2}
    assert _claim(db_session_factory, aged_instance, h1, again)

    row = _row(db_session_factory, aged_instance)
    assert (row["host"], row["node"]) == ("h1", "h1.example")
    assert (row["task_state"], row["attempts"]) == ("networking", 2)
    assert row["availability_zone"] == "az1"  # from the first claim, not given again
    assert row["updated_at"] > LONG_AGO
    assert _allocations(db_session_factory, aged_instance) == [
        (models.DISK_GB, 1),
        (models.MEMORY_MB, 512),
        (models.VCPU, 1),
    ]
    # Same usage and generation: the node was not claimed from a second time.
    assert _usage(db_session_factory, h1) == usage


def test_a_repeated_claim_without_values_changes_nothing(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    assert _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD))
    age_instance(db_session_factory, aged_instance)
    before = _row(db_session_factory, aged_instance)

    with recorded_statements(db_session_factory) as sent:
        assert _claim(db_session_factory, aged_instance, h1, None)

    assert _row(db_session_factory, aged_instance) == before
    assert not [s for s in sent if s.upper().startswith("UPDATE")], sent


def test_a_repeat_the_server_group_now_refuses_is_false_and_sets_nothing(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    group = make_group(db_session_factory, "anti-affinity")
    member = make_instance(db_session_factory)
    assert _claim(db_session_factory, member, h1, None, group=group)
    # Claimed outside the group first: the repeat into the group is checked, and refused.
    assert _claim(db_session_factory, aged_instance, h1, None)
    age_instance(db_session_factory, aged_instance)
    before = _row(db_session_factory, aged_instance)

    assert not _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD), group=group)

    assert _row(db_session_factory, aged_instance) == before
    with db_engine.transaction(db_session_factory) as session:
        assert api.server_group_member_hosts(session, group.id) == {"h1": 1}


# -- refused claims ------------------------------------------------------------------------


def test_a_claim_on_a_host_without_room_leaves_the_instance_untouched(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    usage = _usage(db_session_factory, h1)

    # 4 vCPUs x 4.0 = 16 fit, 17 do not; and a host nobody registered has no room at all.
    assert not _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD), vcpus=17)
    assert not _claim(db_session_factory, aged_instance, "no-such-host", dict(FIRST_BUILD))

    _assert_new(_row(db_session_factory, aged_instance))
    assert _allocations(db_session_factory, aged_instance) == []
    assert _usage(db_session_factory, h1) == usage


def test_a_claim_on_a_disabled_node_leaves_the_instance_untouched(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        api.compute_node_set_disabled(session, h1, True, "maintenance")
    usage = _usage(db_session_factory, h1)

    assert not _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD))

    _assert_new(_row(db_session_factory, aged_instance))
    assert _allocations(db_session_factory, aged_instance) == []
    assert _usage(db_session_factory, h1) == usage


def test_a_claim_its_server_group_refuses_leaves_the_instance_untouched(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    group = make_group(db_session_factory, "anti-affinity")
    assert _claim(db_session_factory, make_instance(db_session_factory), h1, None, group=group)
    usage = _usage(db_session_factory, h1)

    assert not _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD), group=group)

    _assert_new(_row(db_session_factory, aged_instance))
    assert _allocations(db_session_factory, aged_instance) == []
    assert _usage(db_session_factory, h1) == usage


def test_a_claim_of_a_missing_or_soft_deleted_instance_raises_not_found(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, aged_instance)
    age_instance(db_session_factory, aged_instance)
    before = _row(db_session_factory, aged_instance)

    for candidate in (aged_instance, str(uuidlib.uuid4())):
        with pytest.raises(api.InstanceNotFoundError):
            _claim(db_session_factory, candidate, h1, dict(FIRST_BUILD))

    assert _row(db_session_factory, aged_instance) == before
    assert _usage(db_session_factory, h1)[:3] == (0, 0, 0)


# -- values the claim refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"host": "h1"}, "sets host and node itself"),
        ({"node": "h1.example", "task_state": "spawning"}, "sets host and node itself"),
        ({"colour": "blue"}, "cannot update instance field"),
        ({"uuid": "other", "attempts": 1}, "cannot update instance field"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"alternates": "h2"}, "alternates"),
        ({"alternates": ("h2",)}, "alternates"),
        ({"alternates": ["h2", 3]}, "alternates"),
        ({"availability_zone": 3}, "availability_zone"),
    ],
)
def test_refused_values_raise_before_any_statement_and_change_nothing(
    db_session_factory: db_engine.SessionFactory,
    h1: str,
    aged_instance: str,
    values: dict[str, Any],
    message: str,
) -> None:
    usage = _usage(db_session_factory, h1)

    with (
        recorded_statements(db_session_factory) as sent,
        pytest.raises(ValueError, match=message),
    ):
        _claim(db_session_factory, aged_instance, h1, values)

    assert sent == []
    _assert_new(_row(db_session_factory, aged_instance))
    assert _allocations(db_session_factory, aged_instance) == []
    assert _usage(db_session_factory, h1) == usage


def test_refused_values_raise_even_for_a_claim_that_would_be_a_repeat(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    assert _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD))
    age_instance(db_session_factory, aged_instance)
    before = _row(db_session_factory, aged_instance)

    with pytest.raises(ValueError, match="sets host and node itself"):
        _claim(db_session_factory, aged_instance, h1, {"host": "h1", "attempts": 5})

    assert _row(db_session_factory, aged_instance) == before


# -- what a claim costs --------------------------------------------------------------------


def test_a_first_claim_reads_only_the_instance_host_and_updates_the_row_once(
    db_session_factory: db_engine.SessionFactory, h1: str, aged_instance: str
) -> None:
    engine = db_session_factory.kw["bind"]
    sent: list[tuple[str, bool]] = []

    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        sent.append((" ".join(statement.split()), executemany))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert _claim(db_session_factory, aged_instance, h1, dict(FIRST_BUILD))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)

    statements = [s for s, _ in sent]
    upper = [s.upper() for s in statements]
    instance_reads = [s for s in upper if s.startswith("SELECT") and " FROM INSTANCES " in s + " "]
    # One locking read of the host, not the whole record.
    assert len(instance_reads) == 1, instance_reads
    assert instance_reads[0].startswith("SELECT INSTANCES.HOST FROM INSTANCES ")
    assert instance_reads[0].endswith("FOR UPDATE")
    assert not [s for s in upper if "INSTANCES.NAME" in s or "INSTANCES.FLAVOR" in s]
    # One UPDATE of the instance, carrying host, node and the values.
    instance_updates = [s for s in upper if s.startswith("UPDATE INSTANCES ")]
    assert len(instance_updates) == 1, instance_updates
    for column in ("HOST=", "NODE=", "VM_STATE=", "TASK_STATE=", "ATTEMPTS=", "AVAILABILITY_ZONE="):
        assert column in instance_updates[0], column
    # The three allocations in one executemany.
    inserts = [(s, many) for s, many in sent if s.upper().startswith("INSERT INTO ALLOCATIONS")]
    assert inserts == [(inserts[0][0], True)], inserts
    # An instance without a host holds nothing: its allocations are not read.
    assert not [s for s in upper if s.startswith("SELECT") and " FROM ALLOCATIONS" in s]
    # Lock the row, claim the node, read its id, insert, update: five statements today;
    # more means a regression.
    assert len(statements) <= 5, statements


# -- the scheduler with a database claim ---------------------------------------------------


def _db_claim(session_factory: db_engine.SessionFactory, values: dict[str, Any]) -> Any:
    """A claim as the conductor hands the scheduler one: the request's amounts and group,
    with ``values`` recorded."""

    def claim(spec: RequestSpec, host: str) -> api.ClaimResult:
        return api.claim_resources(
            session_factory,
            spec.instance_uuid,
            host,
            spec.vcpus,
            spec.memory_mib,
            spec.disk_gib,
            server_group=request_spec.group_claim(spec),
            instance_values=values,
        )

    return claim


def _up(session_factory: db_engine.SessionFactory, *hosts: str) -> None:
    for host in hosts:
        with db_engine.transaction(session_factory) as session:
            api.service_record_heartbeat(
                session, host, models.AGENT_BINARY, f"compute.{host}", "1.0"
            )


def test_the_scheduler_claims_the_next_host_when_the_database_refuses_the_first(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    # h1 has the most free memory, h3 the least: the RAM weigher orders them h1, h2, h3.
    for host, memory_mib in (("h1", 10240), ("h2", 8192), ("h3", 6144)):
        make_host(db_session_factory, host, vcpus=4, memory_mib=memory_mib, local_gb=100)
    _up(db_session_factory, "h1", "h2", "h3")
    # The scheduler's view of hosts is read before h1 is disabled: its claim on h1 is
    # refused by the database, and the next host is claimed.
    hosts = load_host_states(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        api.compute_node_set_disabled(session, "h1", True, "maintenance")
    uuid = make_instance(db_session_factory)
    scheduler = SchedulerManager(
        lambda: hosts,
        filters=[compute_filter.ComputeFilter(), resource_filter.ResourceFilter()],
        weighers=[RAMWeigher()],
    )
    spec = request_spec.build(
        instance_uuid=uuid, spec={}, flavor=FLAVOR, image=IMAGE, server_group=None
    )

    assert scheduler.schedule(spec, _db_claim(db_session_factory, dict(FIRST_BUILD))) == "h2"

    row = _row(db_session_factory, uuid)
    assert (row["host"], row["task_state"], row["attempts"]) == ("h2", "spawning", 1)
    assert node(db_session_factory, "h1").vcpus_used == 0
    assert node(db_session_factory, "h3").vcpus_used == 0


def test_a_claim_its_server_group_refuses_records_nothing_and_the_next_host_takes_it(
    db_session_factory: db_engine.SessionFactory, h1: str
) -> None:
    make_host(db_session_factory, "h2", vcpus=4, memory_mib=8192, local_gb=100)
    group_object = {
        "metadata": {"uid": str(uuidlib.uuid4()), "name": "web", "namespace": "default"},
        "spec": {"policy": "anti-affinity"},
    }
    first, second = make_instance(db_session_factory), make_instance(db_session_factory)

    def spec_for(uuid: str) -> RequestSpec:
        group = request_spec.server_group(db_session_factory, group_object, uuid)
        return request_spec.build(
            instance_uuid=uuid, spec={}, flavor=FLAVOR, image=IMAGE, server_group=group
        )

    claim = _db_claim(db_session_factory, dict(FIRST_BUILD))
    # Both read the group before either claimed: neither member runs anywhere yet.
    first_spec, second_spec = spec_for(first), spec_for(second)
    assert claim(first_spec, h1)

    refused = claim(second_spec, h1)

    assert refused.refusal == "anti-affinity"
    row = _row(db_session_factory, second)
    assert (row["host"], row["task_state"], row["attempts"]) == (None, "scheduling", 0)
    assert claim(second_spec, "h2")
    row = _row(db_session_factory, second)
    assert (row["host"], row["task_state"], row["attempts"]) == ("h2", "spawning", 1)
