"""Instance records, action history, faults, heartbeats and compute node reports."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import uuid as uuidlib

import pytest

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import IMAGE, make_host, make_instance, node

pytestmark = pytest.mark.integration


def test_create_records_a_building_instance_and_is_idempotent(db_session_factory):
    uuid = make_instance(db_session_factory, namespace="team-a", name="web-1")

    # A retried handler (here with other arguments) gets the first record back untouched.
    make_instance(db_session_factory, uuid, namespace="team-a", name="other", generation=7)

    with db_engine.transaction(db_session_factory) as session:
        instance = api.instance_get(session, uuid)
        assert len(api.instance_get_all(session)) == 1
    assert instance is not None
    assert (instance.name, instance.namespace, instance.project_id) == ("web-1", "team-a", "team-a")
    assert (instance.vm_state, instance.task_state, instance.power_state) == (
        "building",
        "scheduling",
        "nostate",
    )
    assert instance.image == IMAGE
    assert instance.generation == 1
    assert instance.host is None
    assert instance.deleted == 0
    assert instance.created_at.tzinfo is dt.UTC
    assert abs(models.utcnow() - instance.created_at) < dt.timedelta(minutes=1)


def test_concurrent_creates_of_one_uuid_make_one_record(db_session_factory):
    uuid = str(uuidlib.uuid4())
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(timeout=30)
            make_instance(db_session_factory, uuid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    with db_engine.transaction(db_session_factory) as session:
        assert [i.uuid for i in api.instance_get_all(session, read_deleted=True)] == [uuid]


def test_user_data_up_to_64_kib_raw_is_stored_and_more_is_refused(db_session_factory):
    largest = base64.b64encode(b"\xa5" * 64 * 1024).decode()
    too_large = base64.b64encode(b"\xa5" * (64 * 1024 + 1)).decode()
    assert len(largest) == api.MAX_USER_DATA_B64

    uuid = make_instance(db_session_factory, user_data_b64=largest)
    with pytest.raises(ValueError, match="user data"):
        make_instance(db_session_factory, user_data_b64=too_large)

    with db_engine.transaction(db_session_factory) as session:
        instance = api.instance_get(session, uuid)
    assert instance is not None
    assert instance.user_data == largest


def test_soft_delete_hides_the_record_unless_deleted_ones_are_asked_for(db_session_factory):
    uuid = make_instance(db_session_factory)
    other = make_instance(db_session_factory)

    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, uuid)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, uuid)  # idempotent

    with db_engine.transaction(db_session_factory) as session:
        assert api.instance_get(session, uuid) is None
        deleted = api.instance_get(session, uuid, read_deleted=True)
        assert [i.uuid for i in api.instance_get_all(session)] == [other]
        with pytest.raises(api.InstanceNotFoundError):
            api.instance_update(session, uuid, vm_state="active")
    assert deleted is not None
    assert deleted.deleted == deleted.id
    assert deleted.deleted_at is not None
    assert deleted.terminated_at is not None
    assert (deleted.vm_state, deleted.task_state) == ("deleted", None)

    # Kubernetes never reuses a uid: recreating the record is a stale request.
    with pytest.raises(api.InstanceDeletedError):
        make_instance(db_session_factory, uuid)
    with (
        db_engine.transaction(db_session_factory) as session,
        pytest.raises(api.InstanceNotFoundError),
    ):
        api.instance_soft_delete(session, str(uuidlib.uuid4()))


def test_update_sets_fields_and_compares_expected_state(db_session_factory):
    uuid = make_instance(db_session_factory)
    launched = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)

    with db_engine.transaction(db_session_factory) as session:
        api.instance_update(
            session,
            uuid,
            expected_task_state="scheduling",
            task_state="spawning",
            addresses=[{"ip": "192.168.122.10", "mac": "52:54:00:00:00:01"}],
            launched_at=launched,
        )
    with pytest.raises(api.UnexpectedStateError), db_engine.transaction(db_session_factory) as s:
        api.instance_update(s, uuid, expected_task_state=("scheduling", None), vm_state="error")
    with pytest.raises(ValueError, match="uuid"), db_engine.transaction(db_session_factory) as s:
        api.instance_update(s, uuid, uuid="something-else")

    with db_engine.transaction(db_session_factory) as session:
        instance = api.instance_get(session, uuid)
    assert instance is not None
    assert (instance.vm_state, instance.task_state) == ("building", "spawning")
    assert instance.addresses == [{"ip": "192.168.122.10", "mac": "52:54:00:00:00:01"}]
    assert instance.launched_at == launched
    assert instance.updated_at is not None


def test_actions_and_events_record_the_history_of_a_request(db_session_factory):
    uuid = make_instance(db_session_factory)
    request_id = "req-create-1"

    with db_engine.transaction(db_session_factory) as session:
        action = api.action_start(session, uuid, "create", request_id)
        assert api.action_start(session, uuid, "create", request_id).id == action.id
        api.action_event_start(session, uuid, request_id, "compute_build_and_run_instance", "h1")
        api.action_event_finish(
            session,
            uuid,
            request_id,
            "compute_build_and_run_instance",
            api.EVENT_RESULT_ERROR,
            host="h1",
            traceback="Traceback...",
        )
        # Rescheduled to another host, same event name, same request.
        api.action_event_start(session, uuid, request_id, "compute_build_and_run_instance", "h2")
        api.action_event_finish(
            session, uuid, request_id, "compute_build_and_run_instance", api.EVENT_RESULT_SUCCESS
        )
        api.action_finish(session, uuid, request_id)

    with db_engine.transaction(db_session_factory) as session:
        action = session.get_one(models.InstanceAction, action.id)
        events = [(e.host, e.result, e.finish_time is not None) for e in action.events]
        with pytest.raises(api.InstanceActionEventNotFoundError):
            api.action_event_finish(session, uuid, request_id, "never_started", "Success")
        with pytest.raises(api.InstanceActionNotFoundError):
            api.action_finish(session, uuid, "req-unknown")
    assert events == [("h1", "Error", True), ("h2", "Success", True)]
    assert action.message == "Error"
    assert action.project_id == "default"
    assert action.start_time is not None
    assert action.finish_time is not None
    assert action.start_time <= action.finish_time


def test_faults_are_truncated_and_the_newest_is_returned(db_session_factory):
    uuid = make_instance(db_session_factory)

    with db_engine.transaction(db_session_factory) as session:
        api.fault_create(session, uuid, 500, "first", None, "h1")
        api.fault_create(session, uuid, 500, "x" * 1000, "full details", "h2")
        with pytest.raises(api.InstanceNotFoundError):
            api.fault_create(session, str(uuidlib.uuid4()), 500, "m", None, None)

    with db_engine.transaction(db_session_factory) as session:
        latest = api.fault_get_latest(session, uuid)
    assert latest is not None
    assert (latest.message, latest.details, latest.host) == ("x" * 255, "full details", "h2")


def test_heartbeats_register_once_and_count_every_report(db_session_factory):
    def beat(version: str = "0.1.0") -> models.Service:
        with db_engine.transaction(db_session_factory) as session:
            return api.service_update_heartbeat(
                session, "h1", models.AGENT_BINARY, "compute.h1", version
            )

    first = beat()
    second = beat("0.2.0")
    threads = [threading.Thread(target=beat) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    with db_engine.transaction(db_session_factory) as session:
        services = api.service_get_all(session, binary=models.AGENT_BINARY)
    assert [s.id for s in services] == [first.id]
    assert (first.report_count, second.report_count) == (1, 2)
    assert services[0].report_count == 12
    assert second.version == "0.2.0"
    assert first.last_seen_up is not None
    assert second.last_seen_up is not None
    assert second.last_seen_up >= first.last_seen_up
    last_seen_up = services[0].last_seen_up
    assert last_seen_up is not None
    assert api.service_is_up(last_seen_up)
    assert not api.service_is_up(last_seen_up, now=last_seen_up + dt.timedelta(seconds=61))


def test_compute_node_report_updates_inventory_but_never_usage(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    uuid = make_instance(db_session_factory)
    assert api.claim_resources(db_session_factory, uuid, "h1", 2, 1024, 10)
    before = node(db_session_factory, "h1")

    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    unchanged = node(db_session_factory, "h1")
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=4096, local_gb=40)
    grown = node(db_session_factory, "h1")

    assert unchanged.generation == before.generation
    assert grown.generation == before.generation + 1
    assert (grown.id, grown.uuid) == (before.id, before.uuid)
    assert grown.vcpus == 8
    assert (grown.vcpus_used, grown.memory_mib_used, grown.local_gb_used) == (2, 1024, 10)
    assert (grown.cpu_allocation_ratio, grown.reserved_host_memory_mib) == (4.0, 0)
    assert grown.labels == {"zone": "test"}


def test_compute_nodes_list_joins_the_agent_heartbeat(db_session_factory):
    make_host(db_session_factory, "h1", vcpus=4, memory_mib=4096, local_gb=40)
    make_host(db_session_factory, "h2", vcpus=4, memory_mib=4096, local_gb=40)
    with db_engine.transaction(db_session_factory) as session:
        api.service_update_heartbeat(session, "h1", models.AGENT_BINARY, "compute.h1", "0.1.0")
        api.service_update_heartbeat(session, "h2", models.OPERATOR_BINARY, "conductor", "0.1.0")

    with db_engine.transaction(db_session_factory) as session:
        records = {r.node.host: r for r in api.compute_nodes_list(session)}
    assert set(records) == {"h1", "h2"}
    assert records["h1"].service is not None
    assert records["h1"].last_seen_up is not None
    # h2's only service is not its agent.
    assert records["h2"].service is None
    assert records["h2"].last_seen_up is None
