"""What the scheduler reads: every host's capacity and liveness as plain rows (and the host
states built from them), build failures per host, disabled hosts, and each instance's
reschedule bookkeeping."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from kubenova.scheduler import host_state
from kubenova.scheduler.host_manager import DatabaseHosts, load_host_states
from tests.integration.db.helpers import make_host, make_instance, node

pytestmark = pytest.mark.integration

LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
ZONE_LABEL = host_state.AVAILABILITY_ZONE_LABEL


def _beat(session_factory, host: str, binary: str = models.AGENT_BINARY) -> models.Service:
    with db_engine.transaction(session_factory) as session:
        api.service_record_heartbeat(session, host, binary, f"compute.{host}", "1.0")
        service = api.service_get(session, host, binary)
    assert service is not None
    return service


def _set_service(
    session_factory, host: str, binary: str = models.AGENT_BINARY, *, soft_delete=False, **values
) -> None:
    """Write columns of the live service of ``binary`` on ``host``; soft-delete it too if asked."""
    with db_engine.transaction(session_factory) as session:
        service = api.service_get(session, host, binary)
        assert service is not None
        for key, value in values.items():
            setattr(service, key, value)
        if soft_delete:
            service.deleted, service.deleted_at = service.id, models.utcnow()


def _capacity_of(record: api.HostRecord) -> api.HostCapacity:
    """What compute_node_capacities should say of a compute_nodes_list record."""
    n, service = record.node, record.service
    return api.HostCapacity(
        host=n.host,
        vcpus=n.vcpus,
        vcpus_used=n.vcpus_used,
        memory_mib=n.memory_mib,
        memory_mib_used=n.memory_mib_used,
        local_gb=n.local_gb,
        local_gb_used=n.local_gb_used,
        cpu_allocation_ratio=n.cpu_allocation_ratio,
        ram_allocation_ratio=n.ram_allocation_ratio,
        disk_allocation_ratio=n.disk_allocation_ratio,
        reserved_host_memory_mib=n.reserved_host_memory_mib,
        reserved_host_disk_gib=n.reserved_host_disk_gib,
        node_disabled=n.disabled,
        disabled_reason=n.disabled_reason,
        running_vms=n.running_vms,
        labels=n.labels,
        cpu_arch=n.cpu_arch,
        hypervisor_type=n.hypervisor_type,
        virt_type=n.virt_type,
        failed_builds=n.failed_builds,
        service_disabled=None if service is None else service.disabled,
        last_seen_up=record.last_seen_up,
    )


def _hosts_of_every_kind(session_factory) -> None:
    """Live nodes h-a (live agent; a deleted earlier node and agent), h-b (disabled agent),
    h-c (only a deleted agent service and another binary's), h-d (disabled node, no
    service); h-gone was deleted. Created out of host order."""
    make_host(
        session_factory,
        "h-d",
        vcpus=2,
        memory_mib=2048,
        local_gb=20,
        disabled=True,
        disabled_reason="maintenance",
        labels=None,
        failed_builds=2,
        running_vms=1,
    )
    make_host(session_factory, "h-gone", vcpus=4, memory_mib=4096, local_gb=40)
    _beat(session_factory, "h-gone")
    # h-a's first registration: forgotten, its agent service with it.
    make_host(session_factory, "h-a", vcpus=1, memory_mib=1024, local_gb=10)
    _beat(session_factory, "h-a")
    _set_service(session_factory, "h-a", disabled=True, last_seen_up=LONG_AGO)
    for host in ("h-gone", "h-a"):
        with db_engine.transaction(session_factory) as session:
            assert api.compute_node_delete(session, host)
    make_host(
        session_factory,
        "h-c",
        vcpus=4,
        memory_mib=4096,
        local_gb=40,
        virt_type="kvm",
        cpu_arch="aarch64",
    )
    _beat(session_factory, "h-c")
    _set_service(session_factory, "h-c", soft_delete=True, disabled=True, last_seen_up=LONG_AGO)
    _beat(session_factory, "h-c", models.OPERATOR_BINARY)
    make_host(session_factory, "h-b", vcpus=8, memory_mib=8192, local_gb=80)
    _beat(session_factory, "h-b")
    _set_service(session_factory, "h-b", disabled=True, disabled_reason="drained")
    # h-a again: a new node with the operator-set values, a new live agent and another binary.
    make_host(
        session_factory,
        "h-a",
        vcpus=16,
        memory_mib=32768,
        local_gb=500,
        vcpus_used=3,
        memory_mib_used=4096,
        local_gb_used=50,
        cpu_allocation_ratio=2.0,
        ram_allocation_ratio=1.5,
        disk_allocation_ratio=1.25,
        reserved_host_memory_mib=512,
        reserved_host_disk_gib=5,
        running_vms=3,
        labels={ZONE_LABEL: "az1", "gpu": "yes"},
    )
    _beat(session_factory, "h-a")
    _beat(session_factory, "h-a", models.OPERATOR_BINARY)


def test_capacities_say_what_the_node_list_says_as_plain_rows(db_session_factory):
    _hosts_of_every_kind(db_session_factory)

    with db_engine.transaction(db_session_factory) as session:
        records = api.compute_nodes_list(session)
        capacities = api.compute_node_capacities(session)
        agent_a = api.service_get(session, "h-a", models.AGENT_BINARY)
        agent_b = api.service_get(session, "h-b", models.AGENT_BINARY)
    assert agent_a is not None
    assert agent_b is not None

    hosts = ["h-a", "h-b", "h-c", "h-d"]
    assert [c.host for c in capacities] == hosts
    assert [r.node.host for r in records] == hosts
    for record, capacity in zip(records, capacities, strict=True):
        assert type(capacity) is api.HostCapacity
        assert capacity == _capacity_of(record)
        assert capacity.disabled is record.disabled
        assert capacity.last_seen_up == record.last_seen_up

    a, b, c, d = capacities
    # The new node and its live agent, not the deleted ones.
    assert (a.vcpus, a.vcpus_used, a.memory_mib_used, a.local_gb, a.local_gb_used) == (
        16,
        3,
        4096,
        500,
        50,
    )
    assert (a.cpu_allocation_ratio, a.ram_allocation_ratio, a.disk_allocation_ratio) == (
        2.0,
        1.5,
        1.25,
    )
    assert (a.reserved_host_memory_mib, a.reserved_host_disk_gib, a.running_vms) == (512, 5, 3)
    assert a.labels == {ZONE_LABEL: "az1", "gpu": "yes"}
    assert (a.node_disabled, a.service_disabled, a.disabled) == (False, False, False)
    assert a.last_seen_up == agent_a.last_seen_up
    assert a.last_seen_up is not None
    assert a.last_seen_up > LONG_AGO
    # A disabled agent service disables the host; the node's own reason stays empty.
    assert (b.node_disabled, b.service_disabled, b.disabled, b.disabled_reason) == (
        False,
        True,
        True,
        None,
    )
    assert b.last_seen_up == agent_b.last_seen_up
    # No live agent service: neither the deleted one nor the operator's counts.
    assert (c.service_disabled, c.last_seen_up, c.disabled) == (None, None, False)
    assert (c.virt_type, c.cpu_arch, c.hypervisor_type) == ("kvm", "aarch64", "QEMU")
    assert (d.node_disabled, d.disabled_reason, d.disabled) == (True, "maintenance", True)
    assert (d.service_disabled, d.last_seen_up, d.labels, d.failed_builds) == (None, None, None, 2)


def test_rows_with_the_same_labels_share_one_decoded_dict(db_session_factory):
    for host in ("h1", "h2"):
        make_host(
            db_session_factory, host, vcpus=4, memory_mib=4096, local_gb=40, labels={"a": "b"}
        )
    with db_engine.transaction(db_session_factory) as session:
        h1, h2 = api.compute_node_capacities(session)
    assert h1.labels == {"a": "b"}
    assert h1.labels is h2.labels


def test_database_hosts_read_again_build_only_the_changed_host(db_session_factory):
    for host in ("h1", "h2"):
        make_host(db_session_factory, host, vcpus=4, memory_mib=4096, local_gb=40)
    reader = DatabaseHosts(db_session_factory)
    first = {s.host: s for s in reader.all()}
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h2")
            .values(vcpus_used=1)
        )

    second = {s.host: s for s in reader.all()}

    assert second["h1"] is first["h1"]
    assert (second["h2"].vcpus_used, first["h2"].vcpus_used) == (1, 0)


def test_capacities_of_no_hosts_are_empty(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_delete(session, "h1")
        assert api.compute_node_capacities(session) == []


def test_host_states_carry_liveness_labels_and_build_failures(db_session_factory):
    make_host(
        db_session_factory,
        "h1",
        vcpus=8,
        memory_mib=8192,
        local_gb=80,
        vcpus_used=2,
        cpu_allocation_ratio=2.0,
        reserved_host_memory_mib=1024,
        running_vms=2,
        failed_builds=3,
        labels={ZONE_LABEL: "az1", "gpu": "yes"},
    )
    make_host(db_session_factory, "h2", vcpus=4, memory_mib=4096, local_gb=40)
    make_host(db_session_factory, "h3", vcpus=4, memory_mib=4096, local_gb=40, labels=None)
    _beat(db_session_factory, "h1")
    _set_service(db_session_factory, "h1", disabled=True)
    h2_agent = _beat(db_session_factory, "h2")
    with db_engine.transaction(db_session_factory) as session:
        h1_agent = api.service_get(session, "h1", models.AGENT_BINARY)
    assert h1_agent is not None

    states = load_host_states(db_session_factory)

    assert [s.host for s in states] == ["h1", "h2", "h3"]
    h1, h2, h3 = states
    assert (h1.disabled, h1.disabled_reason) == (True, None)
    assert h1.last_seen_up == h1_agent.last_seen_up
    assert h1.labels == {ZONE_LABEL: "az1", "gpu": "yes"}
    assert h1.availability_zone == "az1"
    assert (h1.failed_builds, h1.num_instances) == (3, 2)
    assert (h1.free_vcpus, h1.free_memory_mib) == (8 * 2.0 - 2, 8192 - 1024)
    assert h2.disabled is False
    assert h2.last_seen_up == h2_agent.last_seen_up
    assert h2.is_up(models.utcnow(), 60)
    assert h2.labels == {"zone": "test"}
    assert (h3.last_seen_up, h3.labels, h3.availability_zone) == (None, {}, "nova")
    assert not h3.is_up(models.utcnow(), 60)
    assert h3.failed_builds == 0


def _failure(session_factory, host: str) -> int | None:
    with db_engine.transaction(session_factory) as session:
        return api.compute_node_record_build_failure(session, host)


def test_build_failures_count_up_and_a_report_leaves_them(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    make_host(db_session_factory, "h2", vcpus=4, memory_mib=4096, local_gb=40)
    generation = node(db_session_factory, "h1").generation
    assert node(db_session_factory, "h1").failed_builds == 0

    counts = [_failure(db_session_factory, "h1") for _ in range(3)]
    # The agent's next report leaves the count alone.
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)

    assert counts == [1, 2, 3]
    with db_engine.transaction(db_session_factory) as session:
        listed = {r.node.host: r.node.failed_builds for r in api.compute_nodes_list(session)}
    assert listed == {"h1": 3, "h2": 0}
    assert node(db_session_factory, "h1").generation == generation
    # A success resets the count: compute_node_clear_build_failures, in test_instance_set.py.


def test_a_build_failure_on_an_unknown_host_counts_nothing(db_session_factory):
    assert _failure(db_session_factory, "no-such-host") is None


def test_concurrent_build_failures_each_count(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(2):
                _failure(db_session_factory, "h1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert node(db_session_factory, "h1").failed_builds == 20


def test_disable_keeps_the_reason_and_enable_clears_it(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    make_host(db_session_factory, "h2", vcpus=4, memory_mib=4096, local_gb=40)

    with db_engine.transaction(db_session_factory) as session:
        disabled = api.compute_node_set_disabled(session, "h1", True, "maintenance: " + "x" * 300)
        unknown = api.compute_node_set_disabled(session, "nowhere", True, "gone")
    with db_engine.transaction(db_session_factory) as session:
        records = {r.node.host: r for r in api.compute_nodes_list(session)}

    assert unknown is None
    assert disabled is not None
    assert records["h1"].disabled
    assert not records["h2"].disabled
    reason = records["h1"].node.disabled_reason
    assert reason is not None
    assert reason.startswith("maintenance: ")
    assert len(reason) == 255
    # The agent's next report does not enable the host again.
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    assert node(db_session_factory, "h1").disabled

    with db_engine.transaction(db_session_factory) as session:
        enabled = api.compute_node_set_disabled(session, "h1", False, "back")
    assert enabled is not None
    after = node(db_session_factory, "h1")
    assert (after.disabled, after.disabled_reason) == (False, None)


def test_reschedule_bookkeeping_is_recorded_and_updated(db_session_factory):
    uuid = make_instance(db_session_factory, availability_zone="zone-a")
    plain = make_instance(db_session_factory)

    with db_engine.transaction(db_session_factory) as session:
        fresh = api.instance_get(session, uuid)
        untouched = api.instance_get(session, plain)
        assert fresh is not None
        assert untouched is not None
        assert (fresh.availability_zone, fresh.attempts, fresh.alternates, fresh.tried_hosts) == (
            "zone-a",
            0,
            None,
            None,
        )
        assert (untouched.availability_zone, untouched.attempts) == (None, 0)
        tried = [{"host": "h1", "reason": "spawn failed: no space left"}]
        api.instance_update(session, uuid, attempts=1, alternates=["h2", "h3"], tried_hosts=tried)
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid)
        assert record is not None
        assert record.tried_hosts is not None
        api.instance_update(
            session,
            uuid,
            attempts=2,
            alternates=["h3"],
            tried_hosts=[*record.tried_hosts, {"host": "h2", "reason": "timed out"}],
            availability_zone=None,
        )
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid)
    assert record is not None
    assert (record.attempts, record.alternates, record.availability_zone) == (2, ["h3"], None)
    assert record.tried_hosts == [
        {"host": "h1", "reason": "spawn failed: no space left"},
        {"host": "h2", "reason": "timed out"},
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", -1),
        ("attempts", None),
        ("attempts", True),
        ("alternates", "h1"),
        ("alternates", ["h1", 2]),
        ("tried_hosts", [{"host": "h1"}]),
        ("tried_hosts", [{"host": "h1", "reason": "x", "extra": "y"}]),
        ("tried_hosts", ["h1"]),
        ("availability_zone", 3),
    ],
)
def test_malformed_reschedule_bookkeeping_is_refused(db_session_factory, field, value):
    uuid = make_instance(db_session_factory)

    with (
        pytest.raises(ValueError, match=field),
        db_engine.transaction(db_session_factory) as session,
    ):
        api.instance_update(session, uuid, **{field: value})

    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid)
    assert record is not None
    assert (record.attempts, record.alternates, record.tried_hosts) == (0, None, None)
