"""Actions that finish: a create ends when its host reports the guest launched (or when its
build fails for good), with the host's event; each is shown as an InstanceAction object."""

from __future__ import annotations

import pytest

from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.rpc import payloads
from tests.integration.conductor.fakes import LAUNCHED, instance_name, node_report
from tests.integration.db.helpers import claim, make_instance
from tests.support import RecordingKube

pytestmark = pytest.mark.integration


def _building(session_factory: db_engine.SessionFactory, kube: RecordingKube) -> str:
    uuid = make_instance(session_factory)
    with db_engine.transaction(session_factory) as session:
        db_api.action_start(session, uuid, "create", f"req-{uuid}")
    assert claim(session_factory, uuid, "h1")
    with db_engine.transaction(session_factory) as session:
        db_api.instance_update(session, uuid, task_state="spawning", attempts=1)
    kube.add_instance(instance_name(uuid))
    return uuid


def test_a_launch_report_finishes_the_create_action_with_the_build_event(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.3")
    uuid = _building(db_session_factory, kube)

    conductor.instances.instance_update(
        payloads.InstanceUpdate(
            instance_uuid=uuid,
            host="h1",
            vm_state="active",
            task_state=None,
            power_state="running",
            launched_at=LAUNCHED,
        )
    )

    # Ended with the next batch: nothing in the launch report's transaction.
    with db_engine.transaction(db_session_factory) as session:
        action = db_api.action_get(session, uuid, f"req-{uuid}")
        assert action is not None
        assert action.finish_time is None
    assert conductor.creates.flush() == 1
    with db_engine.transaction(db_session_factory) as session:
        action = db_api.action_get(session, uuid, f"req-{uuid}")
        assert action is not None
        assert action.finish_time == LAUNCHED
        events = db_api.action_events(session, action.id)
        assert [(e.event, e.result, e.host) for e in events] == [
            ("compute_build_and_run_instance", "Success", "h1")
        ]
        assert events[0].start_time == action.start_time
        assert events[0].finish_time == LAUNCHED
    # A batch is idempotent, and one over every instance ends nothing more.
    conductor.creates.add(uuid)
    assert conductor.creates.flush() == 0
    assert conductor.creates.finish_left_over() == 0
    # A create that succeeded at its first try is shown from the Instance: no object.
    conductor.history.flush()
    assert kube.instance_actions == {}


def test_create_actions_an_operator_left_unfinished_are_ended_at_start_up(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.3")
    launched, building = _building(db_session_factory, kube), _building(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, launched, launched_at=LAUNCHED)

    assert conductor.creates.finish_left_over() == 1

    with db_engine.transaction(db_session_factory) as session:
        done = db_api.action_get(session, launched, f"req-{launched}")
        still = db_api.action_get(session, building, f"req-{building}")
        assert done is not None
        assert still is not None
        assert (done.finish_time, still.finish_time) == (LAUNCHED, None)


def test_a_create_that_succeeded_after_a_reschedule_keeps_its_object_with_both_hosts(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.3")
    uuid = _building(db_session_factory, kube)
    with db_engine.transaction(db_session_factory) as session:
        db_api.action_event_record(
            session, uuid, f"req-{uuid}", "compute_build_and_run_instance",
            db_api.EVENT_RESULT_ERROR, host="h0", start_time=None, finish_time=LAUNCHED,
        )  # fmt: skip
        db_api.instance_update(session, uuid, attempts=2)

    conductor.instances.instance_update(
        payloads.InstanceUpdate(
            instance_uuid=uuid,
            host="h1",
            vm_state="active",
            task_state=None,
            power_state="running",
            launched_at=LAUNCHED,
        )
    )

    conductor.history.flush()
    (obj,) = kube.instance_actions.values()
    assert (obj["action"], obj["result"]) == ("create", "Success")
    assert [(e["host"], e["result"]) for e in obj["events"]] == [("h0", "Error"), ("h1", "Success")]


def test_a_build_that_fails_for_good_ends_the_create_action_in_error(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.3")
    uuid = _building(db_session_factory, kube)

    conductor.instances.instance_build_failed(
        payloads.InstanceBuildFailed(
            instance_uuid=uuid,
            host="h1",
            reason="BuildAborted",
            message="image checksum mismatch",
            reschedulable=False,
        )
    )

    with db_engine.transaction(db_session_factory) as session:
        action = db_api.action_get(session, uuid, f"req-{uuid}")
        assert action is not None
        assert action.finish_time is not None
        assert action.message == "build failed on 1 host(s): h1: image checksum mismatch"
        events = db_api.action_events(session, action.id)
        assert [(e.event, e.result, e.details) for e in events] == [
            ("compute_build_and_run_instance", "Error", "image checksum mismatch")
        ]
    conductor.history.flush()
    (obj,) = kube.instance_actions.values()
    assert (obj["action"], obj["result"]) == ("create", "Error")


def test_a_terminate_report_finishes_the_delete_action(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1"), "1.3")
    uuid = _building(db_session_factory, kube)
    assert conductor.api.delete_instance(uuid, "req-delete") is False

    conductor.instances.instance_terminated(
        payloads.InstanceTerminated(instance_uuid=uuid, host="h1"), "req-delete"
    )

    with db_engine.transaction(db_session_factory) as session:
        action = db_api.action_get(session, uuid, "req-delete")
        assert action is not None
        assert action.finish_time is not None
        events = db_api.action_events(session, action.id)
        assert [(e.event, e.result) for e in events] == [("compute_terminate_instance", "Success")]
