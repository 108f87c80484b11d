"""Instance records, action history, faults, heartbeats and compute node reports."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import (
    IMAGE,
    instance_fields,
    make_host,
    make_instance,
    node,
    reads_of,
    recorded_statements,
    verbs,
)

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


def _actions(session_factory, uuid: str) -> list[tuple[str, str, str | None]]:
    """A fresh read of an instance's actions: (action, request id, project id), oldest first."""
    with db_engine.transaction(session_factory) as session:
        rows = session.execute(
            sa.select(
                models.InstanceAction.action,
                models.InstanceAction.request_id,
                models.InstanceAction.project_id,
            )
            .where(models.InstanceAction.instance_uuid == uuid)
            .order_by(models.InstanceAction.id)
        )
        return [tuple(row) for row in rows]


def test_create_of_a_new_uuid_inserts_without_reading_first(db_session_factory):
    fields = instance_fields()
    with (
        db_engine.transaction(db_session_factory) as session,
        recorded_statements(db_session_factory) as sent,
    ):
        created, _ = api.instance_insert(session, **fields)

    # One statement: no read first, and no savepoint (a duplicate fails one statement only).
    assert verbs(sent) == ["INSERT"]
    assert created.uuid == fields["uuid"]
    with db_engine.transaction(db_session_factory) as session:
        stored = api.instance_get(session, fields["uuid"])
    assert stored is not None
    assert stored.id == created.id


def test_duplicate_create_returns_the_live_record_and_the_transaction_goes_on(
    db_session_factory,
):
    uuid = make_instance(db_session_factory, namespace="team-a", name="web-1")
    with db_engine.transaction(db_session_factory) as session:
        first = api.instance_get(session, uuid)
    assert first is not None

    with db_engine.transaction(db_session_factory) as session:
        # Work done before the duplicate must survive its failed INSERT...
        earlier, _ = api.instance_insert(session, **instance_fields(namespace="team-b"))
        again, _ = api.instance_insert(
            session, **instance_fields(uuid, namespace="team-c", name="other", generation=7)
        )
        assert again.id == first.id
        assert (again.name, again.namespace, again.project_id, again.generation) == (
            "web-1",
            "team-a",
            "team-a",
            1,
        )
        # ...and the transaction takes more statements after it, and commits.
        api.action_start(session, uuid, "create", "req-retry", instance=again)
        api.instance_update(session, uuid, task_state="spawning")

    with db_engine.transaction(db_session_factory) as session:
        live = {i.uuid: i for i in api.instance_get_all(session, read_deleted=True)}
    assert set(live) == {uuid, earlier.uuid}
    assert (live[uuid].name, live[uuid].generation, live[uuid].task_state) == (
        "web-1",
        1,
        "spawning",
    )
    assert live[earlier.uuid].namespace == "team-b"
    assert _actions(db_session_factory, uuid) == [("create", "req-retry", "team-a")]


def test_duplicate_create_sees_a_row_committed_after_the_transactions_snapshot(
    db_session_factory,
):
    uuid = str(uuidlib.uuid4())
    with db_engine.transaction(db_session_factory) as session:
        # A consistent read fixes this transaction's REPEATABLE READ snapshot without the row.
        assert api.instance_get(session, uuid) is None
        make_instance(db_session_factory, uuid, name="winner")
        # Only a locking read sees the winner's row (with innodb_snapshot_isolation=ON, the
        # default from MariaDB 11.8, that read fails with error 1020 instead, a retryable one).
        record, _ = api.instance_insert(session, **instance_fields(uuid, name="loser"))
        assert (record.uuid, record.name) == (uuid, "winner")

    with db_engine.transaction(db_session_factory) as session:
        assert [i.name for i in api.instance_get_all(session, read_deleted=True)] == ["winner"]


def test_create_of_a_soft_deleted_uuid_raises_and_leaves_the_transaction_usable(
    db_session_factory,
):
    gone = make_instance(db_session_factory, name="gone")
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, gone)

    with db_engine.transaction(db_session_factory) as session:
        kept, _ = api.instance_insert(session, **instance_fields(name="kept"))
        with pytest.raises(api.InstanceDeletedError) as caught:
            api.instance_insert(session, **instance_fields(gone, name="again"))
        assert caught.value.uuid == gone
        api.action_start(session, kept.uuid, "create", "req-kept", instance=kept)

    with db_engine.transaction(db_session_factory) as session:
        rows = {i.uuid: i for i in api.instance_get_all(session, read_deleted=True)}
    assert set(rows) == {gone, kept.uuid}
    assert (rows[gone].name, rows[gone].vm_state, rows[gone].deleted) == (
        "gone",
        "deleted",
        rows[gone].id,
    )
    assert (rows[kept.uuid].name, rows[kept.uuid].deleted) == ("kept", 0)
    assert _actions(db_session_factory, kept.uuid) == [("create", "req-kept", "default")]


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


def test_action_start_with_the_live_record_skips_reading_the_instance(db_session_factory):
    uuid = make_instance(db_session_factory, namespace="team-a")

    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid)
        assert record is not None
        with recorded_statements(db_session_factory) as given:
            action = api.action_start(session, uuid, "create", "req-1", instance=record)
        with recorded_statements(db_session_factory) as repeated:
            again = api.action_start(session, uuid, "create", "req-1", instance=record)
        with recorded_statements(db_session_factory) as not_given:
            other = api.action_start(session, uuid, "reboot", "req-1")
        assert api.action_start(session, uuid, "create", "req-1").id == action.id

    # Look up the action, then insert: no read of the instance.
    assert verbs(given) == ["SELECT", "INSERT"]
    assert reads_of("instances", given) == []
    # Idempotent as before: the existing action, found before any instance is needed.
    assert again.id == action.id
    assert verbs(repeated) == ["SELECT"]
    # Without the record, the instance is read (so the count above can see a read).
    assert len(reads_of("instances", not_given)) == 1
    assert other.id != action.id
    assert _actions(db_session_factory, uuid) == [
        ("create", "req-1", "team-a"),
        ("reboot", "req-1", "team-a"),
    ]


def test_action_start_for_an_instance_inserted_in_the_same_transaction_only_inserts(
    db_session_factory,
):
    fields = instance_fields(namespace="team-n")
    with db_engine.transaction(db_session_factory) as session:
        record, created = api.instance_insert(session, **fields)
        with recorded_statements(db_session_factory) as sent:
            action = api.action_start(
                session, record.uuid, "create", "req-new", instance=record, new_instance=created
            )

    assert created is True
    assert verbs(sent) == ["INSERT"]
    assert action.id is not None
    assert _actions(db_session_factory, record.uuid) == [("create", "req-new", "team-n")]


def test_instance_insert_says_whether_the_record_is_new(db_session_factory):
    fields = instance_fields(namespace="team-i")
    with db_engine.transaction(db_session_factory) as session:
        first, first_created = api.instance_insert(session, **fields)
    with db_engine.transaction(db_session_factory) as session:
        again, again_created = api.instance_insert(session, **{**fields, "name": "renamed"})

    assert (first_created, again_created) == (True, False)
    assert again.id == first.id
    # The new record carries what was written, as the stored row does.
    with db_engine.transaction(db_session_factory) as session:
        stored = api.instance_get(session, fields["uuid"])
    assert stored is not None
    for column in ("name", "namespace", "vm_state", "task_state", "flavor", "image", "attempts"):
        assert getattr(first, column) == getattr(stored, column), column


def test_instance_lock_reads_one_row_and_instance_set_writes_it_once(db_session_factory):
    uuid = make_instance(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        with recorded_statements(db_session_factory) as locked:
            record = api.instance_lock(session, uuid)
        assert record is not None
        with recorded_statements(db_session_factory) as written:
            api.instance_set(session, record, power_state="running", task_state=None)
        assert (record.power_state, record.task_state) == ("running", None)
        # A record the session holds is brought up to date without a second write at flush.
        held = api.instance_get(session, uuid)
        assert held is not None
        with recorded_statements(db_session_factory) as flushed:
            api.instance_set(session, held, vm_state="active")
            session.flush()

    assert verbs(locked) == ["SELECT"]
    assert "FOR UPDATE" in locked[0]
    assert verbs(written) == ["UPDATE"]
    assert verbs(flushed) == ["UPDATE"]
    with db_engine.transaction(db_session_factory) as session:
        stored = api.instance_get(session, uuid)
        assert stored is not None
        assert (stored.power_state, stored.task_state, stored.vm_state) == (
            "running",
            None,
            "active",
        )
        api.instance_soft_delete(session, uuid)
    with db_engine.transaction(db_session_factory) as session:
        assert api.instance_lock(session, uuid) is None
        deleted = api.instance_lock(session, uuid, read_deleted=True)
        assert deleted is not None
        assert deleted.deleted != 0
        with pytest.raises(api.InstanceNotFoundError):
            api.instance_set(session, deleted, power_state="shutdown")


def test_action_start_with_a_record_of_another_instance_reads_the_right_one(
    db_session_factory,
):
    uuid = make_instance(db_session_factory, namespace="team-a")
    other = make_instance(db_session_factory, namespace="team-b")

    with db_engine.transaction(db_session_factory) as session:
        other_record = api.instance_get(session, other)
        assert other_record is not None
        with recorded_statements(db_session_factory) as sent:
            action = api.action_start(session, uuid, "create", "req-a", instance=other_record)

    assert len(reads_of("instances", sent)) == 1
    assert (action.instance_uuid, action.project_id) == (uuid, "team-a")
    assert _actions(db_session_factory, uuid) == [("create", "req-a", "team-a")]
    assert _actions(db_session_factory, other) == []


def test_action_start_with_a_deleted_record_or_for_a_missing_uuid_raises_not_found(
    db_session_factory,
):
    gone = make_instance(db_session_factory)
    live = make_instance(db_session_factory)
    missing = str(uuidlib.uuid4())
    with db_engine.transaction(db_session_factory) as session:
        deleted_record = api.instance_soft_delete(session, gone)
    assert deleted_record.deleted != 0

    with db_engine.transaction(db_session_factory) as session:
        live_record = api.instance_get(session, live)
        assert live_record is not None
        with pytest.raises(api.InstanceNotFoundError) as deleted:
            api.action_start(session, gone, "delete", "req-gone", instance=deleted_record)
        with pytest.raises(api.InstanceNotFoundError) as not_there:
            api.action_start(session, missing, "create", "req-missing", instance=live_record)
    assert (deleted.value.uuid, not_there.value.uuid) == (gone, missing)
    assert _actions(db_session_factory, gone) == []
    assert _actions(db_session_factory, missing) == []
    assert _actions(db_session_factory, live) == []


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
            api.service_record_heartbeat(session, "h1", models.AGENT_BINARY, "compute.h1", version)
            service = api.service_get(session, "h1", models.AGENT_BINARY)
        assert service is not None
        return service

    first = beat()
    second = beat("0.2.0")
    threads = [threading.Thread(target=beat) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    with db_engine.transaction(db_session_factory) as session:
        services = session.scalars(
            sa.select(models.Service).where(models.Service.binary == models.AGENT_BINARY)
        ).all()
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
        api.service_record_heartbeat(session, "h1", models.AGENT_BINARY, "compute.h1", "0.1.0")
        api.service_record_heartbeat(session, "h2", models.OPERATOR_BINARY, "conductor", "0.1.0")

    with db_engine.transaction(db_session_factory) as session:
        records = {r.node.host: r for r in api.compute_nodes_list(session)}
    assert set(records) == {"h1", "h2"}
    assert records["h1"].service is not None
    assert records["h1"].last_seen_up is not None
    # h2's only service is not its agent.
    assert records["h2"].service is None
    assert records["h2"].last_seen_up is None
