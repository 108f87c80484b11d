"""What a host's agent reports: its heartbeat and its compute node, written by a few prebuilt
statements that create the records on the first report and never touch what claims and
administrators own."""

from __future__ import annotations

import threading
import uuid as uuidlib
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import (
    LONG_AGO,
    node,
    recorded_statements,
    verbs,
)

pytestmark = pytest.mark.integration

AZ1 = {"topology.kubernetes.io/zone": "az1"}


def _report(
    session_factory: db_engine.SessionFactory, host: str = "h1", **overrides: Any
) -> api.ReportedNode:
    """Record one report of an 8 vCPU, 8 GiB, 100 GiB host, as the conductor does."""
    values: dict[str, Any] = {
        "vcpus": 8,
        "memory_mib": 8192,
        "local_gb": 100,
        "hypervisor_type": "QEMU",
        "hypervisor_version": "7.2.0",
        "libvirt_version": "9.0.0",
        "virt_type": "qemu",
        "cpu_arch": "x86_64",
        "running_vms": 0,
    }
    values.update(overrides)
    with db_engine.transaction(session_factory) as session:
        return api.compute_node_update_from_report(session, host, **values)


def _set_node(session_factory: db_engine.SessionFactory, host: str, **values: Any) -> None:
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode).where(models.ComputeNode.host == host).values(**values)
        )


def _live_nodes(session_factory: db_engine.SessionFactory) -> list[str]:
    with db_engine.transaction(session_factory) as session:
        return [r.node.host for r in api.compute_nodes_list(session)]


def test_the_first_report_registers_the_node(db_session_factory: db_engine.SessionFactory) -> None:
    reported = _report(db_session_factory, labels=AZ1, running_vms=2)

    recorded = node(db_session_factory, "h1")
    assert reported.uuid == recorded.uuid
    assert uuidlib.UUID(recorded.uuid)
    assert (recorded.vcpus, recorded.memory_mib, recorded.local_gb) == (8, 8192, 100)
    assert (recorded.hypervisor_type, recorded.hypervisor_version) == ("QEMU", "7.2.0")
    assert (recorded.libvirt_version, recorded.virt_type, recorded.cpu_arch) == (
        "9.0.0",
        "qemu",
        "x86_64",
    )
    assert (recorded.running_vms, recorded.labels, recorded.hypervisor_hostname) == (2, AZ1, "h1")
    # As a node made empty and then given its inventory.
    assert recorded.generation == 1
    assert (recorded.vcpus_used, recorded.memory_mib_used, recorded.local_gb_used) == (0, 0, 0)
    assert (recorded.cpu_allocation_ratio, recorded.ram_allocation_ratio) == (4.0, 1.0)
    assert (recorded.disabled, recorded.disabled_reason, recorded.failed_builds) == (False, None, 0)
    assert recorded.created_at is not None
    assert recorded.updated_at is None


def test_the_report_returns_what_the_hypervisor_status_shows(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    _report(db_session_factory)
    _set_node(
        db_session_factory,
        "h1",
        vcpus_used=3,
        memory_mib_used=1024,
        local_gb_used=10,
        reserved_host_memory_mib=512,
        disabled=True,
        disabled_reason="maintenance",
    )

    reported = _report(db_session_factory, running_vms=3)

    recorded = node(db_session_factory, "h1")
    assert reported == api.ReportedNode._make(
        getattr(recorded, field) for field in api.ReportedNode._fields
    )
    assert (reported.vcpus_used, reported.running_vms) == (3, 3)
    assert (reported.disabled, reported.disabled_reason) == (True, "maintenance")


def test_a_repeated_report_moves_the_generation_only_when_the_inventory_changed(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    first = _report(db_session_factory)
    generation = node(db_session_factory, "h1").generation
    _set_node(db_session_factory, "h1", updated_at=LONG_AGO)

    _report(db_session_factory)
    same = node(db_session_factory, "h1")
    assert (same.generation, same.updated_at) == (generation, LONG_AGO)

    _report(db_session_factory, hypervisor_version="8.0.0", running_vms=4)
    facts = node(db_session_factory, "h1")
    assert (facts.hypervisor_version, facts.running_vms) == ("8.0.0", 4)
    assert facts.generation == generation
    assert facts.updated_at is not None
    assert facts.updated_at > LONG_AGO

    for grown, inventory in enumerate(
        ({"vcpus": 16}, {"memory_mib": 16384}, {"local_gb": 200}), start=1
    ):
        _report(db_session_factory, **{**_inventory_of(db_session_factory), **inventory})
        changed = node(db_session_factory, "h1")
        assert changed.generation == generation + grown
    assert (changed.vcpus, changed.memory_mib, changed.local_gb) == (16, 16384, 200)
    assert (changed.id, changed.uuid) == (same.id, first.uuid)


def _inventory_of(session_factory: db_engine.SessionFactory) -> dict[str, int]:
    recorded = node(session_factory, "h1")
    return {
        "vcpus": recorded.vcpus,
        "memory_mib": recorded.memory_mib,
        "local_gb": recorded.local_gb,
    }


def test_a_change_of_case_alone_is_a_change(db_session_factory: db_engine.SessionFactory) -> None:
    _report(db_session_factory, labels=AZ1)
    _set_node(db_session_factory, "h1", updated_at=LONG_AGO)

    _report(db_session_factory, hypervisor_type="qemu")

    recorded = node(db_session_factory, "h1")
    assert recorded.hypervisor_type == "qemu"
    assert recorded.updated_at is not None
    assert recorded.updated_at > LONG_AGO


def test_labels_change_only_when_given(db_session_factory: db_engine.SessionFactory) -> None:
    _report(db_session_factory, labels=AZ1)
    _set_node(db_session_factory, "h1", updated_at=LONG_AGO)

    _report(db_session_factory, labels=None)
    kept = node(db_session_factory, "h1")
    assert (kept.labels, kept.updated_at) == (AZ1, LONG_AGO)

    _report(db_session_factory, labels=dict(AZ1))
    assert node(db_session_factory, "h1").updated_at == LONG_AGO

    _report(db_session_factory, labels={"topology.kubernetes.io/zone": "az2"})
    moved = node(db_session_factory, "h1")
    assert moved.labels == {"topology.kubernetes.io/zone": "az2"}
    assert moved.updated_at is not None
    assert moved.updated_at > LONG_AGO

    _report(db_session_factory, labels={})
    assert node(db_session_factory, "h1").labels == {}


def test_a_node_first_reported_without_labels_has_none(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    _report(db_session_factory)
    assert node(db_session_factory, "h1").labels is None


def test_the_hypervisor_hostname_changes_only_when_given(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    _report(db_session_factory, hypervisor_hostname="h1.example.org")
    _report(db_session_factory)
    assert node(db_session_factory, "h1").hypervisor_hostname == "h1.example.org"
    _report(db_session_factory, hypervisor_hostname="h1.example.com")
    assert node(db_session_factory, "h1").hypervisor_hostname == "h1.example.com"


def test_a_report_never_touches_usage_ratios_reservations_or_disabled(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    _report(db_session_factory)
    owned_elsewhere = {
        "vcpus_used": 3,
        "memory_mib_used": 1536,
        "local_gb_used": 30,
        "cpu_allocation_ratio": 2.0,
        "ram_allocation_ratio": 1.5,
        "disk_allocation_ratio": 1.25,
        "reserved_host_memory_mib": 512,
        "reserved_host_disk_gib": 5,
        "disabled": True,
        "disabled_reason": "maintenance",
        "failed_builds": 2,
    }
    _set_node(db_session_factory, "h1", **owned_elsewhere)

    _report(db_session_factory, vcpus=16, memory_mib=4096, local_gb=50, labels=AZ1)

    recorded = node(db_session_factory, "h1")
    assert {key: getattr(recorded, key) for key in owned_elsewhere} == owned_elsewhere
    assert (recorded.vcpus, recorded.memory_mib, recorded.local_gb) == (16, 4096, 50)


def test_concurrent_first_reports_create_one_node(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def first_report() -> None:
        barrier.wait()
        try:
            _report(db_session_factory)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_report) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert _live_nodes(db_session_factory) == ["h1"]
    # One creation, no inventory change after it.
    assert node(db_session_factory, "h1").generation == 1


def test_a_report_naming_the_recorded_uuid_updates_the_node(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    uuid = str(uuidlib.uuid4())
    assert _report(db_session_factory, uuid=uuid).uuid == uuid

    reported = _report(db_session_factory, uuid=uuid, vcpus=16)

    assert reported.vcpus == 16
    assert (node(db_session_factory, "h1").uuid, node(db_session_factory, "h1").generation) == (
        uuid,
        2,
    )


def test_a_report_naming_another_uuid_for_a_recorded_host_is_refused_and_changes_nothing(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    _report(db_session_factory, labels=AZ1)
    before = node(db_session_factory, "h1")

    with pytest.raises(api.ComputeNodeConflictError, match="is recorded with compute node uuid"):
        _report(db_session_factory, uuid=str(uuidlib.uuid4()), vcpus=16, labels={})

    after = node(db_session_factory, "h1")
    assert (after.uuid, after.vcpus, after.labels, after.generation) == (
        before.uuid,
        8,
        AZ1,
        before.generation,
    )


def test_a_report_naming_another_hosts_uuid_is_refused_and_changes_neither(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    other = _report(db_session_factory, "h2")

    with pytest.raises(api.ComputeNodeConflictError, match="belongs to another record"):
        _report(db_session_factory, "h1", uuid=other.uuid, vcpus=16)

    assert _live_nodes(db_session_factory) == ["h2"]
    assert node(db_session_factory, "h2").vcpus == 8


def test_a_report_naming_a_deleted_nodes_uuid_is_refused(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    gone = _report(db_session_factory, "h1")
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_delete(session, "h1")

    with pytest.raises(api.ComputeNodeConflictError, match="belongs to another record"):
        _report(db_session_factory, "h1", uuid=gone.uuid)

    assert _live_nodes(db_session_factory) == []
    # Without a uuid the host registers again, as a new node.
    assert _report(db_session_factory, "h1").uuid != gone.uuid


def test_heartbeats_are_recorded_without_reading_the_service_back(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    for version in ("1.0", "1.1"):
        with db_engine.transaction(db_session_factory) as session:
            api.service_record_heartbeat(session, "h1", models.AGENT_BINARY, "compute.h1", version)

    with db_engine.transaction(db_session_factory) as session:
        service = api.service_get(session, "h1", models.AGENT_BINARY)
    assert service is not None
    assert (service.report_count, service.version, service.topic) == (2, "1.1", "compute.h1")
    assert service.last_seen_up is not None
    assert service.updated_at == service.last_seen_up


def test_a_heartbeat_is_three_statements(db_session_factory: db_engine.SessionFactory) -> None:
    _report(db_session_factory)

    with (
        recorded_statements(db_session_factory) as sent,
        db_engine.transaction(db_session_factory) as session,
    ):
        api.service_record_heartbeat(session, "h1", models.AGENT_BINARY, "compute.h1", "1.0")
        api.compute_node_update_from_report(
            session,
            "h1",
            vcpus=8,
            memory_mib=8192,
            local_gb=100,
            hypervisor_type="QEMU",
            hypervisor_version="7.2.0",
            libvirt_version="9.0.0",
            virt_type="qemu",
            cpu_arch="x86_64",
            running_vms=1,
        )

    # There were five: the service read back through the ORM, the node made to exist, then
    # locked and loaded through the ORM, and the flush of what changed.
    assert verbs(sent) == ["INSERT", "INSERT", "SELECT"], sent
    assert "INTO services" in sent[0]
    assert "INTO compute_nodes" in sent[1]
    assert "FROM compute_nodes" in sent[2]
