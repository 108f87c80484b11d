"""Setting columns of an instance row the caller already locked or holds a current copy of
(one UPDATE, no read), and clearing a host's build failures after a successful build."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from kubenova.db import api, exceptions, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import (
    LONG_AGO,
    age_instance,
    make_host,
    make_instance,
    node,
    recorded_statements,
    verbs,
)

pytestmark = pytest.mark.integration


def _read(session_factory: db_engine.SessionFactory, uuid: str) -> models.Instance:
    with db_engine.transaction(session_factory) as session:
        found = api.instance_get(session, uuid, read_deleted=True)
        assert found is not None
        return found


def test_set_writes_the_given_columns_of_the_locked_row(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    uuid = make_instance(db_session_factory)
    launched = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid, for_update=True)
        assert record is not None
        api.instance_set(
            session,
            record,
            vm_state="active",
            task_state=None,
            power_state="running",
            addresses=["192.168.122.10"],
            launched_at=launched,
        )
    stored = _read(db_session_factory, uuid)
    assert (stored.vm_state, stored.task_state, stored.power_state) == ("active", None, "running")
    assert stored.addresses == ["192.168.122.10"]
    assert stored.launched_at == launched
    assert stored.updated_at is not None


def test_set_is_seen_by_later_statements_of_the_same_transaction(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    uuid = make_instance(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid, for_update=True)
        assert record is not None
        api.instance_set(session, record, vm_state="active", power_state="running")
        # Flushed: a Core query in the same transaction sees the new values.
        row = session.execute(
            sa.select(models.Instance.vm_state, models.Instance.power_state).where(
                models.Instance.uuid == uuid
            )
        ).one()
    assert tuple(row) == ("active", "running")


# Values instance_update refuses, and what its ValueError says.
REFUSED = [
    ({"colour": "blue"}, "cannot update instance field"),
    ({"vm_state": "active", "uuid": "other"}, "cannot update instance field"),
    ({"deleted": 1}, "cannot update instance field"),
    ({"id": 7}, "cannot update instance field"),
    ({"created_at": LONG_AGO}, "cannot update instance field"),
    ({"deleted_at": LONG_AGO}, "cannot update instance field"),
    ({"attempts": -1}, "attempts must be a non-negative int"),
    ({"attempts": True}, "attempts must be a non-negative int"),
    ({"attempts": None}, "attempts must be a non-negative int"),
    ({"alternates": "h2"}, "alternates must be a list of host names"),
    ({"alternates": ["h2", 3]}, "alternates must be a list of host names"),
    ({"tried_hosts": [{"host": "h1"}]}, "tried_hosts must be a list"),
    ({"tried_hosts": ["h1"]}, "tried_hosts must be a list"),
    ({"availability_zone": 3}, "availability_zone must be a string"),
]


@pytest.mark.parametrize(("values", "message"), REFUSED)
def test_set_refuses_what_instance_update_refuses_and_changes_nothing(
    db_session_factory: db_engine.SessionFactory, values: dict[str, Any], message: str
) -> None:
    uuid = make_instance(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid, for_update=True)
        assert record is not None
        with pytest.raises(ValueError, match=message):
            api.instance_set(session, record, **values)
        with pytest.raises(ValueError, match=message):
            api.instance_update(session, uuid, **values)
        # Refused before any column was set, valid ones included.
        assert record.vm_state == "building"
    stored = _read(db_session_factory, uuid)
    assert (stored.uuid, stored.vm_state, stored.deleted) == (uuid, "building", 0)
    assert stored.attempts != -1


def test_set_on_a_soft_deleted_record_raises_not_found_and_writes_nothing(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    uuid = make_instance(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, uuid)
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, uuid, read_deleted=True, for_update=True)
        assert record is not None
        with pytest.raises(exceptions.InstanceNotFoundError) as caught:
            api.instance_set(session, record, vm_state="active", power_state="running")
        assert uuid in str(caught.value)
    stored = _read(db_session_factory, uuid)
    assert (stored.vm_state, stored.power_state) == ("deleted", "nostate")
    assert stored.deleted != 0


def test_update_unread_writes_the_given_columns_with_one_update(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    uuid = make_instance(db_session_factory, request_id="req-1")
    bystander = make_instance(db_session_factory)
    age_instance(db_session_factory, uuid)
    age_instance(db_session_factory, bystander)
    tried = [{"host": "h1", "reason": "spawn failed"}]

    with db_engine.transaction(db_session_factory) as session:
        with recorded_statements(db_session_factory) as sent:
            result = api.instance_update_unread(
                session,
                uuid,
                task_state="spawning",
                request_id="req-2",
                attempts=1,
                alternates=["h2", "h3"],
                tried_hosts=tried,
                availability_zone="az1",
            )
        # Seen by later statements of the same transaction.
        in_transaction = session.execute(
            sa.select(models.Instance.task_state, models.Instance.attempts).where(
                models.Instance.uuid == uuid
            )
        ).one()

    assert result is None
    assert verbs(sent) == ["UPDATE"]
    assert tuple(in_transaction) == ("spawning", 1)
    stored = _read(db_session_factory, uuid)
    assert (stored.vm_state, stored.task_state, stored.request_id) == (
        "building",
        "spawning",
        "req-2",
    )
    assert (stored.attempts, stored.alternates) == (1, ["h2", "h3"])
    assert stored.availability_zone == "az1"
    assert stored.tried_hosts == tried
    assert stored.updated_at is not None
    assert stored.updated_at > LONG_AGO
    untouched = _read(db_session_factory, bystander)
    assert (untouched.task_state, untouched.attempts, untouched.request_id) == (
        "scheduling",
        0,
        f"req-{bystander}",
    )
    assert untouched.updated_at == LONG_AGO


def test_update_unread_with_the_current_values_finds_the_row(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    uuid = make_instance(db_session_factory)
    current = _read(db_session_factory, uuid)
    with db_engine.transaction(db_session_factory) as session:
        # Rows matched, not rows changed: nothing differs, yet the live row is found.
        api.instance_update_unread(
            session, uuid, vm_state=current.vm_state, task_state=current.task_state, attempts=0
        )
        api.instance_update_unread(session, uuid, vm_state=current.vm_state)
    stored = _read(db_session_factory, uuid)
    assert (stored.vm_state, stored.task_state, stored.attempts) == ("building", "scheduling", 0)


def test_update_unread_of_an_unknown_or_soft_deleted_instance_raises_not_found(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    gone = make_instance(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, gone)
    unknown = "00000000-0000-0000-0000-000000000000"

    with db_engine.transaction(db_session_factory) as session:
        with pytest.raises(exceptions.InstanceNotFoundError) as deleted:
            api.instance_update_unread(session, gone, vm_state="active", power_state="running")
        with pytest.raises(exceptions.InstanceNotFoundError) as never:
            api.instance_update_unread(session, unknown, vm_state="active")
    assert (deleted.value.uuid, never.value.uuid) == (gone, unknown)
    stored = _read(db_session_factory, gone)
    assert (stored.vm_state, stored.power_state) == ("deleted", "nostate")
    assert stored.deleted == stored.id


@pytest.mark.parametrize(("values", "message"), REFUSED)
def test_update_unread_refuses_what_instance_update_refuses_before_any_statement(
    db_session_factory: db_engine.SessionFactory, values: dict[str, Any], message: str
) -> None:
    uuid = make_instance(db_session_factory)
    age_instance(db_session_factory, uuid)
    with db_engine.transaction(db_session_factory) as session:
        with (
            recorded_statements(db_session_factory) as sent,
            pytest.raises(ValueError, match=message) as unread,
        ):
            api.instance_update_unread(session, uuid, **values)
        with pytest.raises(ValueError, match=message) as update:
            api.instance_update(session, uuid, **values)
    assert str(unread.value) == str(update.value)
    assert sent == []
    stored = _read(db_session_factory, uuid)
    assert (stored.uuid, stored.vm_state, stored.deleted, stored.attempts) == (
        uuid,
        "building",
        0,
        0,
    )
    assert stored.updated_at == LONG_AGO


def _failed_builds(session_factory: db_engine.SessionFactory, host: str, count: int) -> None:
    with db_engine.transaction(session_factory) as session:
        session.execute(
            sa.update(models.ComputeNode)
            .where(models.ComputeNode.host == host)
            .values(failed_builds=count, updated_at=LONG_AGO)
        )


def test_clearing_build_failures_resets_the_count_of_that_host_only(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    make_host(db_session_factory, "h2", vcpus=8, memory_mib=8192, local_gb=100)
    _failed_builds(db_session_factory, "h1", 3)
    _failed_builds(db_session_factory, "h2", 2)

    with db_engine.transaction(db_session_factory) as session:
        api.compute_node_clear_build_failures(session, "h1")

    h1, h2 = node(db_session_factory, "h1"), node(db_session_factory, "h2")
    assert (h1.failed_builds, h2.failed_builds) == (0, 2)
    assert h1.updated_at is not None
    assert h1.updated_at > LONG_AGO
    assert h2.updated_at == LONG_AGO


def test_clearing_a_host_without_failures_leaves_its_row_unwritten(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    _failed_builds(db_session_factory, "h1", 0)
    with db_engine.transaction(db_session_factory) as session:
        api.compute_node_clear_build_failures(session, "h1")
    h1 = node(db_session_factory, "h1")
    assert h1.failed_builds == 0
    assert h1.updated_at == LONG_AGO  # no UPDATE matched the row


def test_clearing_build_failures_of_an_unknown_or_deleted_host_does_nothing(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    _failed_builds(db_session_factory, "h1", 4)
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_delete(session, "h1")
    with db_engine.transaction(db_session_factory) as session:
        api.compute_node_clear_build_failures(session, "h1")
        api.compute_node_clear_build_failures(session, "never-registered")
        counts = session.scalars(
            sa.select(models.ComputeNode.failed_builds).where(models.ComputeNode.host == "h1")
        ).all()
    assert counts == [4]  # the soft-deleted row keeps its count
