"""A host's agent may only report on instances assigned to its own host.

RabbitMQ vouches for who sent a report (its ``user_id``), and the sender check makes sure
the report is about the sender's own host. What remains is a genuine agent that reports on
an instance the database places on another host (or on none): the conductor refuses the
update and the termination, ignores the build failure and the termination of an instance
placed nowhere, and in each case writes nothing, patches no status and casts nothing. Every
report here goes through ``ConductorManager.handle``, as the
consumer delivers it, with the sender's real agent user.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubenova.conductor.service import Conductor
from kubenova.config import MessagingSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.exception import PermanentFailure
from kubenova.rpc import envelope, payloads
from tests.integration.conductor.fakes import building_on, node_report, running_instance
from tests.integration.db.helpers import LONG_AGO, age_instance, allocations_of, node
from tests.support import RecordingCaster, RecordingKube

pytestmark = pytest.mark.integration

HOSTS = ("h1", "h2", "h3")

# What the handlers could change on the record (updated_at shows any other write).
_RECORD_COLUMNS = (
    "host",
    "node",
    "vm_state",
    "task_state",
    "power_state",
    "addresses",
    "launched_at",
    "attempts",
    "alternates",
    "tried_hosts",
    "deleted",
    "updated_at",
)


def _from_agent(conductor: Conductor, method: str, payload: Any) -> None:
    """Deliver ``payload`` as the consumer does: in an envelope, with the ``user_id`` that
    RabbitMQ verified, here the real agent user of the host the payload names."""
    message = envelope.Envelope(
        request_id=envelope.new_request_id(),
        method=method,
        args=payload.model_dump(mode="json"),
        sender=f"kubenova-agent.{payload.host}",
    )
    conductor.manager.handle(message, MessagingSettings.agent_user(payload.host))


def _state(session_factory: db_engine.SessionFactory, uuid: str) -> dict[str, Any]:
    """What the database says of the instance and of every host: the record (deleted or
    not), the allocations it holds, and each node's claimed usage and build failures."""
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid, read_deleted=True)
        assert record is not None
        recorded = {column: getattr(record, column) for column in _RECORD_COLUMNS}
        allocations = [
            (row.compute_node_id, row.resource_class, row.used)
            for row in allocations_of(session, uuid)
        ]
    nodes = {
        host: (n.vcpus_used, n.memory_mib_used, n.local_gb_used, n.failed_builds)
        for host, n in ((host, node(session_factory, host)) for host in HOSTS)
    }
    return {"record": recorded, "allocations": allocations, "nodes": nodes}


@pytest.fixture
def hosts(conductor: Conductor) -> None:
    """h1, h2 and h3, registered by a heartbeat each from their own agents."""
    for host in HOSTS:
        _from_agent(conductor, "compute_node_report", node_report(host))


def _quiet(
    session_factory: db_engine.SessionFactory,
    uuid: str,
    kube: RecordingKube,
    caster: RecordingCaster,
) -> dict[str, Any]:
    """Forget the calls of the setup and age the record, so any later write shows; the
    state to compare with afterwards."""
    age_instance(session_factory, uuid)
    kube.clear()
    caster.casts.clear()
    before = _state(session_factory, uuid)
    assert before["record"]["updated_at"] == LONG_AGO
    assert before["allocations"], "the instance should hold a claim on h1"
    return before


def test_an_update_from_another_host_is_refused_and_writes_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    hosts: None,
) -> None:
    uuid = running_instance(db_session_factory, kube, "h1")
    before = _quiet(db_session_factory, uuid, kube, caster)

    forged = payloads.InstanceUpdate(
        instance_uuid=uuid,
        host="h2",
        vm_state="stopped",
        task_state=None,
        power_state="shutdown",
        addresses=("10.66.66.66",),
        launched_at=dt.datetime.now(dt.UTC),
    )
    with pytest.raises(PermanentFailure, match="assigned to 'h1'"):
        _from_agent(conductor, "instance_update", forged)

    assert _state(db_session_factory, uuid) == before
    assert before["record"]["host"] == "h1"
    assert before["record"]["power_state"] == "running"
    assert kube.calls == {}
    assert caster.casts == []


def test_a_termination_from_another_host_is_refused_and_frees_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    hosts: None,
) -> None:
    uuid = running_instance(db_session_factory, kube, "h1")
    before = _quiet(db_session_factory, uuid, kube, caster)

    with pytest.raises(PermanentFailure, match="assigned to 'h1'"):
        _from_agent(
            conductor,
            "instance_terminated",
            payloads.InstanceTerminated(instance_uuid=uuid, host="h2"),
        )

    assert _state(db_session_factory, uuid) == before
    assert before["record"]["deleted"] == 0
    assert before["nodes"]["h1"][:3] == (1, 512, 1)  # the claim still counts on h1
    assert kube.calls == {}
    assert caster.casts == []


def test_a_build_failure_from_another_host_is_ignored_and_reschedules_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    hosts: None,
) -> None:
    # Had the failure counted, the build would go to h3 (h2 is among the hosts tried).
    uuid = building_on(db_session_factory, kube, "h1", ["h2", "h3"])
    before = _quiet(db_session_factory, uuid, kube, caster)

    _from_agent(
        conductor,
        "instance_build_failed",
        payloads.InstanceBuildFailed(
            instance_uuid=uuid,
            host="h2",
            reason="BuildFailed",
            message="forged by h2",
            reschedulable=True,
        ),
    )

    assert _state(db_session_factory, uuid) == before
    assert (before["record"]["host"], before["record"]["tried_hosts"]) == ("h1", None)
    assert before["record"]["task_state"] == "spawning"
    assert kube.calls == {}
    assert caster.casts == []


def test_a_termination_about_an_instance_on_no_host_writes_nothing(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
    hosts: None,
) -> None:
    # A build that failed on h1 for good: the instance is in Error, on no host.
    uuid = building_on(db_session_factory, kube, "h1", [])
    _from_agent(
        conductor,
        "instance_build_failed",
        payloads.InstanceBuildFailed(
            instance_uuid=uuid,
            host="h1",
            reason="BuildAborted",
            message="image is corrupt",
            reschedulable=False,
        ),
    )
    age_instance(db_session_factory, uuid)
    kube.clear()
    caster.casts.clear()
    before = _state(db_session_factory, uuid)
    assert (before["record"]["host"], before["record"]["vm_state"]) == (None, "error")

    _from_agent(
        conductor,
        "instance_terminated",
        payloads.InstanceTerminated(instance_uuid=uuid, host="h2"),
    )

    assert _state(db_session_factory, uuid) == before
    assert kube.calls == {}
    assert caster.casts == []
