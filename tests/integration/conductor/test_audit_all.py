"""The periodic audit of every host at once, on a real database: each host that reported is
audited against its own report, with one usage query for all of them (setup as in
test_host_audit.py)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.conductor import audit as audit_mod
from kubenova.conductor.audit import HostAuditor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import compute_rpcapi
from tests.integration.db.helpers import claim, make_host, make_instance
from tests.support import RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration


class CountingUsageAudit:
    """Wraps ``db_api.usage_audit`` and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = db_api.usage_audit

    def __call__(self, session: Any) -> list[db_api.UsageDiscrepancy]:
        self.calls += 1
        return self._real(session)


@pytest.fixture
def usage_audits(monkeypatch: pytest.MonkeyPatch) -> CountingUsageAudit:
    counting = CountingUsageAudit()
    monkeypatch.setattr(audit_mod.db_api, "usage_audit", counting)
    return counting


def _running_on(session_factory: db_engine.SessionFactory, host: str) -> str:
    instance_uuid = make_instance(session_factory)
    assert claim(session_factory, instance_uuid, host)
    with db_engine.transaction(session_factory) as session:
        db_api.instance_update(session, instance_uuid, vm_state="active", task_state=None)
    return instance_uuid


def _leftover_on(session_factory: db_engine.SessionFactory, host: str) -> str:
    """A domain still on ``host`` whose record was deleted."""
    leftover = _running_on(session_factory, host)
    db_api.release_resources(session_factory, leftover)
    with db_engine.transaction(session_factory) as session:
        db_api.instance_soft_delete(session, leftover)
    return leftover


def test_every_host_that_reported_is_audited_against_its_own_report(
    db_session_factory: db_engine.SessionFactory, usage_audits: CountingUsageAudit
) -> None:
    kube, caster = RecordingKube(), RecordingCaster()
    for host in ("h1", "h2", "h3"):
        make_host(db_session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)
        kube.add_hypervisor(host)
    on_h1 = _running_on(db_session_factory, "h1")
    leftover = _leftover_on(db_session_factory, "h1")
    on_h2 = _running_on(db_session_factory, "h2")
    compute = compute_rpcapi.ComputeAPI(caster)
    auditor = HostAuditor(db_session_factory, kube, compute)  # type: ignore[arg-type]
    # h3 never reported.
    auditor.record_report("h1", (on_h1, leftover))
    auditor.record_report("h2", (on_h2,))

    first = auditor.audit_all()
    assert usage_audits.calls == 1
    assert set(first) == {"h1", "h2"}
    assert first["h1"]["leftoverDomains"] == [leftover]
    assert first["h1"]["inSync"] is False
    assert first["h2"]["leftoverDomains"] == []
    assert first["h2"]["inSync"] is True
    assert caster.casts == []  # one sighting may be a race with the delete
    assert sorted(host for host, _ in kube.hypervisor_patches) == ["h1", "h2"]

    second = auditor.audit_all()
    assert usage_audits.calls == 2
    assert set(second) == {"h1", "h2"}
    assert [(c.topic, c.method, c.args) for c in caster.casts] == [
        ("compute.h1", "terminate_instance", {"instance_uuid": leftover})
    ]
    assert second["h2"]["inSync"] is True
    assert [host for host, _ in kube.hypervisor_patches].count("h3") == 0


def test_a_usage_difference_shows_only_on_its_own_host(
    db_session_factory: db_engine.SessionFactory, usage_audits: CountingUsageAudit
) -> None:
    kube, caster = RecordingKube(), RecordingCaster()
    for host in ("h1", "h2"):
        make_host(db_session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)
        kube.add_hypervisor(host)
    on = {host: _running_on(db_session_factory, host) for host in ("h1", "h2")}
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == "h2")
            .values(memory_mib_used=models.ComputeNode.memory_mib_used + 256)
        )
    compute = compute_rpcapi.ComputeAPI(caster)
    auditor = HostAuditor(db_session_factory, kube, compute)  # type: ignore[arg-type]
    for host, instance_uuid in on.items():
        auditor.record_report(host, (instance_uuid,))

    results = auditor.audit_all()

    assert usage_audits.calls == 1
    assert results["h1"]["usageMatchesAllocations"] is True
    assert results["h1"]["inSync"] is True
    assert results["h2"]["usageMatchesAllocations"] is False
    assert results["h2"]["inSync"] is False


def test_no_host_reported_means_no_audit_and_no_query(
    db_session_factory: db_engine.SessionFactory, usage_audits: CountingUsageAudit
) -> None:
    kube, caster = RecordingKube(), RecordingCaster()
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    kube.add_hypervisor("h1")
    compute = compute_rpcapi.ComputeAPI(caster)
    auditor = HostAuditor(db_session_factory, kube, compute)  # type: ignore[arg-type]
    assert auditor.audit_all() == {}
    assert usage_audits.calls == 0
    assert kube.hypervisor_patches == []


def test_all_hosts_are_audited_in_three_statements(
    db_session_factory: db_engine.SessionFactory, usage_audits: CountingUsageAudit
) -> None:
    kube, caster = RecordingKube(), RecordingCaster()
    hosts = [f"h{n}" for n in range(6)]
    reports = {}
    for host in hosts:
        make_host(db_session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)
        kube.add_hypervisor(host)
        reports[host] = (_running_on(db_session_factory, host),)
    compute = compute_rpcapi.ComputeAPI(caster)
    auditor = HostAuditor(db_session_factory, kube, compute)  # type: ignore[arg-type]
    for host, reported in reports.items():
        auditor.record_report(host, reported)
    statements: list[str] = []
    engine = db_session_factory.kw["bind"]

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        results = auditor.audit_all()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)

    assert sorted(results) == hosts
    assert all(result["inSync"] for result in results.values())
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3, selects


def test_a_host_that_went_down_is_not_audited_on_its_last_report(
    db_session_factory: db_engine.SessionFactory, usage_audits: CountingUsageAudit
) -> None:
    kube, caster = RecordingKube(), RecordingCaster()
    for host in ("h1", "h2"):
        make_host(db_session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)
        kube.add_hypervisor(host)
    leftover = _leftover_on(db_session_factory, "h1")
    on_h2 = _running_on(db_session_factory, "h2")
    compute = compute_rpcapi.ComputeAPI(caster)
    auditor = HostAuditor(db_session_factory, kube, compute)  # type: ignore[arg-type]
    auditor.record_report("h1", (leftover,))
    auditor.record_report("h2", (on_h2,))
    assert auditor.audit_all()["h1"]["leftoverDomains"] == [leftover]

    # h1 goes down: its delete already queued the terminate; every later audit would cast it
    # again into a queue nobody reads.
    auditor.forget_report("h1")
    for _ in range(3):
        assert set(auditor.audit_all()) == {"h2"}
    assert caster.casts == []
    assert auditor.audit("h1") is None

    # Back up, it reports again and is audited from scratch: two sightings before a terminate.
    auditor.record_report("h1", (leftover,))
    auditor.audit_all()
    assert caster.casts == []
    auditor.audit_all()
    assert [(c.topic, c.args) for c in caster.casts] == [
        ("compute.h1", {"instance_uuid": leftover})
    ]
