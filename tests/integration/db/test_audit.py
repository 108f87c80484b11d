"""Audit inputs: usage counters against allocations, records against what a host reports."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import claim, make_host, make_instance

pytestmark = pytest.mark.integration


@pytest.fixture
def read_only_session_factory(db_url) -> Iterator[db_engine.SessionFactory]:
    """Sessions whose every transaction is READ ONLY: a write fails (MySQL error 1792)."""
    engine = db_engine.create_engine(
        db_url, connect_args={"init_command": "SET SESSION TRANSACTION READ ONLY"}
    )
    try:
        yield db_engine.make_session_factory(engine)
    finally:
        engine.dispose()


def _hosts(session_factory, *hosts: str) -> None:
    for host in hosts:
        make_host(session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)


def test_the_read_only_fixture_does_refuse_writes(read_only_session_factory):
    # Guards the tests below: were writes allowed, "the audits do not write" would prove nothing.
    with (
        pytest.raises(sa.exc.OperationalError, match="1792"),
        db_engine.transaction(read_only_session_factory) as session,
    ):
        session.execute(sa.update(models.ComputeNode).values(running_vms=1))


def test_usage_audit_names_only_hosts_whose_counters_differ_from_allocations(
    db_session_factory, read_only_session_factory
):
    _hosts(db_session_factory, "h1", "h2", "h3")
    for host in ("h1", "h1", "h2"):
        assert claim(db_session_factory, make_instance(db_session_factory), host)
    with db_engine.transaction(read_only_session_factory) as session:
        assert api.usage_audit(session) == []

    # Counters drifting away from allocations, both ways, as a bug or a manual edit would.
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h1")
            .values(memory_mib_used=models.ComputeNode.memory_mib_used + 256)
        )
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h3")
            .values(vcpus_used=2, local_gb_used=5)
        )

    with db_engine.transaction(read_only_session_factory) as session:
        found = api.usage_audit(session)
    assert found == [
        api.UsageDiscrepancy(
            host="h1",
            claimed=api.Usage(vcpus=2, memory_mib=1280, disk_gib=2),
            allocated=api.Usage(vcpus=2, memory_mib=1024, disk_gib=2),
        ),
        api.UsageDiscrepancy(
            host="h3",
            claimed=api.Usage(vcpus=2, memory_mib=0, disk_gib=5),
            allocated=api.Usage(),
        ),
    ]
    host, claimed, allocated = found[1]
    assert (host, claimed.vcpus, allocated.vcpus) == ("h3", 2, 0)


def test_live_records_the_host_did_not_report_are_listed(
    db_session_factory, read_only_session_factory
):
    _hosts(db_session_factory, "h1", "h2")
    reported, vanished, building, elsewhere = (make_instance(db_session_factory) for _ in range(4))
    for uuid in (reported, vanished, building):
        assert claim(db_session_factory, uuid, "h1")
    assert claim(db_session_factory, elsewhere, "h2")
    with db_engine.transaction(db_session_factory) as session:
        for uuid in (reported, vanished):
            api.instance_update(session, uuid, vm_state="active", task_state=None)

    with db_engine.transaction(read_only_session_factory) as session:
        everything = api.instances_not_reported_by_host(
            session, {"h1": [reported, "not-a-record"]}
        )["h1"]
        settled = api.instances_not_reported_by_host(
            session, {"h1": iter([reported])}, exclude_vm_states=("building",)
        )["h1"]
        on_h2 = api.instances_not_reported_by_host(session, {"h2": [elsewhere]})["h2"]
        nothing_reported = api.instances_not_reported_by_host(session, {"h2": []})["h2"]

    assert everything == [vanished, building]
    assert settled == [vanished]
    assert on_h2 == []
    assert nothing_reported == [elsewhere]


def test_reported_uuids_without_a_live_record_here_are_sorted_by_why(
    db_session_factory, read_only_session_factory
):
    _hosts(db_session_factory, "h1", "h2")
    here, deleted, on_h2, unplaced = (make_instance(db_session_factory) for _ in range(4))
    for uuid, host in ((here, "h1"), (deleted, "h1"), (on_h2, "h2")):
        assert claim(db_session_factory, uuid, host)
    assert api.release_resources(db_session_factory, deleted)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, deleted)
    # More unknown uuids than one IN list takes.
    strangers = sorted(str(uuidlib.uuid4()) for _ in range(1200))

    with db_engine.transaction(read_only_session_factory) as session:
        found = api.reported_without_live_record_by_host(
            session, {"h1": [here, deleted, deleted, on_h2, unplaced, *strangers]}
        )["h1"]
        clean = api.reported_without_live_record_by_host(session, {"h1": [here]})["h1"]

    assert found.soft_deleted == [deleted]
    assert found.unknown == strangers
    assert found.elsewhere == sorted([on_h2, unplaced])
    assert clean == api.UnrecordedDomains(soft_deleted=[], unknown=[], elsewhere=[])
