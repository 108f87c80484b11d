"""The periodic host audit on a real database: what it reports, and what it reaps only
once two audits agree."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from kubenova.conductor import audit as audit_mod
from kubenova.conductor.audit import HostAuditor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.rpc import compute_rpcapi
from tests.integration.db.helpers import claim, make_host, make_instance
from tests.support import FakeClock, RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration


@pytest.fixture
def auditor_parts(db_session_factory):
    kube, caster = RecordingKube(), RecordingCaster()
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    kube.add_hypervisor("h1")
    compute = compute_rpcapi.ComputeAPI(caster)
    auditor = HostAuditor(db_session_factory, kube, compute)  # type: ignore[arg-type]
    return auditor, kube, caster, db_session_factory


def _running_on(session_factory, host: str) -> str:
    instance_uuid = make_instance(session_factory)
    assert claim(session_factory, instance_uuid, host)
    with db_engine.transaction(session_factory) as session:
        db_api.instance_update(session, instance_uuid, vm_state="active", task_state=None)
    return instance_uuid


def test_host_running_exactly_its_instances_is_in_sync(auditor_parts):
    auditor, kube, caster, sf = auditor_parts
    instance_uuid = _running_on(sf, "h1")
    auditor.record_report("h1", (instance_uuid,))
    audit = auditor.audit("h1")
    assert audit["inSync"] is True
    assert kube.hypervisor_patches[-1] == ("h1", {"audit": audit})
    assert caster.casts == []


def test_missing_and_unknown_domains_are_reported_and_never_terminated(auditor_parts):
    auditor, _, caster, sf = auditor_parts
    recorded = _running_on(sf, "h1")
    stranger = str(uuidlib.uuid4())
    auditor.record_report("h1", (stranger,))
    first = auditor.audit("h1")
    assert first["missingDomains"] == []  # once may be a build the report predates
    audit = auditor.audit("h1")
    assert audit["missingDomains"] == [recorded]
    assert audit["unknownDomains"] == [stranger]
    assert audit["inSync"] is False
    assert caster.casts == []


def test_leftover_of_a_deleted_record_is_terminated_after_two_audits_agree(auditor_parts):
    auditor, _, caster, sf = auditor_parts
    leftover = _running_on(sf, "h1")
    db_api.release_resources(sf, leftover)
    with db_engine.transaction(sf) as session:
        db_api.instance_soft_delete(session, leftover)
    auditor.record_report("h1", (leftover,))

    first = auditor.audit("h1")
    assert first["leftoverDomains"] == [leftover]
    assert caster.casts == []  # one sighting may be a race with the delete

    auditor.audit("h1")
    assert [(c.topic, c.method, c.args) for c in caster.casts] == [
        ("compute.h1", "terminate_instance", {"instance_uuid": leftover})
    ]


def test_host_that_never_reported_is_not_audited(auditor_parts):
    auditor, kube, _, _ = auditor_parts
    assert auditor.audit("h1") is None
    assert kube.hypervisor_patches == []


@pytest.fixture
def clocked(db_session_factory):
    """An auditor of host h1 on a clock the test moves, and the statuses it writes."""
    kube, caster, clock = RecordingKube(), RecordingCaster(), FakeClock()
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    kube.add_hypervisor("h1")
    compute = compute_rpcapi.ComputeAPI(caster)
    auditor = HostAuditor(db_session_factory, kube, compute, clock=clock)  # type: ignore[arg-type]
    return auditor, kube, clock


def test_unchanged_findings_are_written_again_only_to_refresh_last_run(db_session_factory, clocked):
    auditor, kube, clock = clocked
    instance_uuid = _running_on(db_session_factory, "h1")
    auditor.record_report("h1", (instance_uuid,))

    first = auditor.audit("h1")
    clock.advance(60)
    second = auditor.audit("h1")

    assert second["inSync"] is True
    assert kube.hypervisor_patches == [("h1", {"audit": first})], (
        "the same findings were written twice"
    )

    clock.advance(audit_mod.AUDIT_STATUS_REFRESH_S)
    third = auditor.audit("h1")
    assert kube.hypervisor_patches[-1] == ("h1", {"audit": third})
    assert len(kube.hypervisor_patches) == 2


def test_changed_findings_are_written_at_once(db_session_factory, clocked):
    auditor, kube, clock = clocked
    instance_uuid = _running_on(db_session_factory, "h1")
    auditor.record_report("h1", (instance_uuid,))
    auditor.audit("h1")

    stranger = str(uuidlib.uuid4())
    auditor.record_report("h1", (instance_uuid, stranger))
    clock.advance(1)
    changed = auditor.audit("h1")

    assert changed["unknownDomains"] == [stranger]
    assert kube.hypervisor_patches[-1] == ("h1", {"audit": changed})
    assert len(kube.hypervisor_patches) == 2


def test_a_host_whose_object_changed_gets_its_findings_written_again(clocked):
    auditor, kube, _ = clocked
    auditor.record_report("h1", ())
    auditor.audit("h1")

    auditor.forget_written("h1")  # say the Hypervisor object was deleted and made again
    again = auditor.audit("h1")

    assert kube.hypervisor_patches[-1] == ("h1", {"audit": again})
    assert len(kube.hypervisor_patches) == 2
