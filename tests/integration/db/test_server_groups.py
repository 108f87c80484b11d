"""Server group records: upsert, lookup, what a deleted record means, members and their hosts."""

from __future__ import annotations

import threading
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import (
    claim,
    make_group,
    make_host,
    make_instance,
    member_hosts,
    members,
    soft_delete_group,
)

pytestmark = pytest.mark.integration


def _upsert(session_factory, uuid, policy, max_server_per_host=None, name="web", ns="team-a"):
    with db_engine.transaction(session_factory) as session:
        return api.server_group_upsert(
            session,
            uuid=uuid,
            name=name,
            namespace=ns,
            policy=policy,
            max_server_per_host=max_server_per_host,
        )


def _hosts(session_factory, *hosts: str) -> None:
    for host in hosts:
        make_host(session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)


def test_upsert_records_a_group_and_is_idempotent(db_session_factory):
    uuid = str(uuidlib.uuid4())

    first = _upsert(db_session_factory, uuid, "anti-affinity", 2)
    again = _upsert(db_session_factory, uuid, "anti-affinity", 2)

    with db_engine.transaction(db_session_factory) as session:
        found = api.server_group_get(session, "team-a", "web")
        assert api.server_group_get(session, "team-b", "web") is None
        count = session.scalar(sa.select(sa.func.count()).select_from(models.ServerGroup))
    assert found is not None
    assert count == 1
    assert first.id == again.id == found.id
    assert (found.uuid, found.namespace, found.project_id, found.name) == (
        uuid,
        "team-a",
        "team-a",
        "web",
    )
    assert (found.policy, found.max_server_per_host, found.deleted) == ("anti-affinity", 2, 0)
    # The same values again wrote nothing.
    assert found.updated_at is None


def test_concurrent_first_upserts_of_one_group_make_one_record(db_session_factory):
    uuid = str(uuidlib.uuid4())
    barrier = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []

    def upsert() -> None:
        try:
            barrier.wait(timeout=30)
            ids.append(_upsert(db_session_factory, uuid, "affinity").id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upsert) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(ids) == 8
    assert len(set(ids)) == 1


def test_bad_policies_and_rules_are_refused(db_session_factory):
    uuid = str(uuidlib.uuid4())
    with pytest.raises(ValueError, match="unknown server group policy 'spread'"):
        _upsert(db_session_factory, uuid, "spread")
    with pytest.raises(ValueError, match="anti-affinity policy only"):
        _upsert(db_session_factory, uuid, "soft-anti-affinity", 2)
    with pytest.raises(ValueError, match="at least 1"):
        _upsert(db_session_factory, uuid, "anti-affinity", 0)

    with db_engine.transaction(db_session_factory) as session:
        recorded = session.scalar(
            sa.select(sa.func.count())
            .select_from(models.ServerGroup)
            .where(models.ServerGroup.uuid == uuid)
        )
    assert recorded == 0


def test_policy_changes_only_while_the_group_has_no_members(db_session_factory):
    _hosts(db_session_factory, "h1")
    uuid = str(uuidlib.uuid4())
    _upsert(db_session_factory, uuid, "affinity")
    group = _upsert(db_session_factory, uuid, "anti-affinity")
    assert group.policy == "anti-affinity"

    vm = make_instance(db_session_factory)
    assert claim(db_session_factory, vm, "h1", group)
    with pytest.raises(api.ServerGroupPolicyImmutableError) as raised:
        _upsert(db_session_factory, uuid, "affinity")
    assert "1 member(s)" in str(raised.value)
    assert (raised.value.policy, raised.value.requested) == ("anti-affinity", "affinity")
    # The rule may change with members: it governs the claims to come.
    assert _upsert(db_session_factory, uuid, "anti-affinity", 3).max_server_per_host == 3

    # Deleting the member's instance frees the policy again.
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, vm)
    assert _upsert(db_session_factory, uuid, "soft-affinity").policy == "soft-affinity"


def test_a_live_name_cannot_be_taken_by_another_uuid_until_the_stale_one_is_deleted(
    db_session_factory,
):
    stale, fresh = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    _upsert(db_session_factory, stale, "affinity")

    with pytest.raises(api.ServerGroupConflictError) as raised:
        _upsert(db_session_factory, fresh, "anti-affinity")
    assert raised.value.existing_uuid == stale

    soft_delete_group(db_session_factory, stale)
    group = _upsert(db_session_factory, fresh, "anti-affinity")
    with db_engine.transaction(db_session_factory) as session:
        found = api.server_group_get(session, "team-a", "web")
    assert found is not None
    assert (found.id, found.uuid, found.policy) == (group.id, fresh, "anti-affinity")


def test_a_deleted_group_is_not_found_by_name_and_its_uid_cannot_come_back(db_session_factory):
    group = make_group(db_session_factory, "anti-affinity")
    soft_delete_group(db_session_factory, group.uuid)

    with db_engine.transaction(db_session_factory) as session:
        assert api.server_group_get(session, group.namespace, group.name) is None
    # A uid is never reused: recording the deleted group again is a stale request.
    with pytest.raises(api.ServerGroupDeletedError):
        make_group(db_session_factory, "anti-affinity", uuid=group.uuid, name=group.name)


def test_member_hosts_count_live_members_that_have_a_host(db_session_factory):
    _hosts(db_session_factory, "h1", "h2")
    group = make_group(db_session_factory, "soft-affinity")
    on_h1 = [make_instance(db_session_factory) for _ in range(3)]
    on_h2, released, deleted = (make_instance(db_session_factory) for _ in range(3))
    for vm in on_h1:
        assert claim(db_session_factory, vm, "h1", group)
    for vm, host in ((on_h2, "h2"), (released, "h2"), (deleted, "h1")):
        assert claim(db_session_factory, vm, host, group)
    # Released for a reschedule: still a member, but on no host.
    assert api.release_resources(db_session_factory, released, clear_host=True)
    assert member_hosts(db_session_factory, group.id) == {"h1": 4, "h2": 1}

    assert api.release_resources(db_session_factory, deleted)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, deleted)

    assert member_hosts(db_session_factory, group.id) == {"h1": 3, "h2": 1}
    with db_engine.transaction(db_session_factory) as session:
        assert api.server_group_members(session, group.id) == [*on_h1, on_h2, released]
        assert api.server_group_member_hosts(session, group.id, exclude_instance=on_h2) == {"h1": 3}


def test_a_soft_deleted_instance_record_never_counts_as_a_member(db_session_factory):
    # Even were its membership row left behind (written around the api here), a deleted
    # instance holds no place in its group.
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity")
    vm = make_instance(db_session_factory)
    assert claim(db_session_factory, vm, "h1", group)
    with db_engine.transaction(db_session_factory) as session:
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.uuid == vm)
            .values(deleted=models.Instance.id)
        )

    assert members(db_session_factory, group.id) == [vm]
    assert member_hosts(db_session_factory, group.id) == {}
    with db_engine.transaction(db_session_factory) as session:
        assert api.server_group_members(session, group.id) == []
    assert claim(db_session_factory, make_instance(db_session_factory), "h1", group)


def test_remove_member_deletes_the_membership_once(db_session_factory):
    _hosts(db_session_factory, "h1", "h2")
    group = make_group(db_session_factory, "anti-affinity")
    gone, stays = make_instance(db_session_factory), make_instance(db_session_factory)
    assert claim(db_session_factory, gone, "h1", group)
    assert claim(db_session_factory, stays, "h2", group)

    with db_engine.transaction(db_session_factory) as session:
        first = api.server_group_remove_member(session, gone)
    with db_engine.transaction(db_session_factory) as session:
        second = api.server_group_remove_member(session, gone)
        never = api.server_group_remove_member(session, str(uuidlib.uuid4()))

    assert (first, second, never) == (1, 0, 0)
    assert members(db_session_factory, group.id) == [stays]
    assert member_hosts(db_session_factory, group.id) == {"h2": 1}


def test_soft_deleting_an_instance_removes_its_membership(db_session_factory):
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity")
    vm = make_instance(db_session_factory)
    assert claim(db_session_factory, vm, "h1", group)

    assert api.release_resources(db_session_factory, vm)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, vm)

    assert members(db_session_factory, group.id) == []
    # Its place on h1 is free for the next member.
    assert claim(db_session_factory, make_instance(db_session_factory), "h1", group)
