"""A delete asked again while its host is up casts the terminate again: the first, or the
host's report of it, may have been lost (a purged queue, a report that could not be sent),
and without a second the record would wait in ``deleting`` for good. On a real database."""

from __future__ import annotations

import sqlalchemy as sa

from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import payloads
from tests.integration.conductor.fakes import node_report, running_instance
from tests.support import RecordingCaster, RecordingKube


def _terminates(caster: RecordingCaster, uuid: str) -> list[str]:
    return [
        cast.topic
        for cast in caster.casts
        if cast.method == "terminate_instance" and cast.args.get("instance_uuid") == uuid
    ]


def test_a_delete_asked_again_casts_the_terminate_again_until_the_host_reports(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    conductor: Conductor,
) -> None:
    conductor.hypervisors.compute_node_report(node_report())
    uuid = running_instance(db_session_factory, kube)

    assert not conductor.api.delete_instance(uuid, "req-delete")
    assert _terminates(caster, uuid) == ["compute.h1"]

    # The terminate (or the report of it) was lost: asked again, the conductor casts it again.
    assert not conductor.api.delete_instance(uuid, "req-delete")
    assert _terminates(caster, uuid) == ["compute.h1", "compute.h1"]
    with db_engine.transaction(db_session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        assert record.task_state == "deleting"
        deletes = session.scalars(
            sa.select(models.InstanceAction).where(
                models.InstanceAction.instance_uuid == uuid,
                models.InstanceAction.action == "delete",
            )
        ).all()
    assert len(deletes) == 1

    # The host's reports of both terminates: the first finishes the delete, the second is moot.
    for _ in range(2):
        conductor.instances.instance_terminated(
            payloads.InstanceTerminated(instance_uuid=uuid, host="h1"), "req-terminate"
        )
    assert conductor.api.delete_instance(uuid, "req-delete")
    assert _terminates(caster, uuid) == ["compute.h1", "compute.h1"]
