"""ServerGroup status: members counted and placed per host, written only when it changes.

``ServerGroupStatus.project_all`` runs on the conductor's periodic thread; here it
is called directly against the real database, with a fake holding the ServerGroup objects
and applying status patches as JSON merge patches (so a host patched to null disappears).
"""

from __future__ import annotations

import uuid as uuidlib

import pytest

from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, server_groups
from tests.integration.db.helpers import claim, make_host, make_instance
from tests.support import RecordingKube

pytestmark = pytest.mark.integration


def _group(session_factory: db_engine.SessionFactory, name: str) -> models.ServerGroup:
    with db_engine.transaction(session_factory) as session:
        return db_api.server_group_upsert(
            session,
            uuid=str(uuidlib.uuid4()),
            name=name,
            namespace="default",
            policy="anti-affinity",
            max_server_per_host=2,
        )


def test_members_are_counted_per_host_and_unchanged_groups_are_not_written(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    for host in ("h1", "h2"):
        make_host(db_session_factory, host, vcpus=8, memory_mib=8192, local_gb=100)
    group = _group(db_session_factory, "web")
    kube.add_server_group("default", "web")
    placed = [make_instance(db_session_factory) for _ in range(3)]
    assert claim(db_session_factory, placed[0], "h1", group)
    assert claim(db_session_factory, placed[1], "h1", group)
    assert claim(db_session_factory, placed[2], "h2", group)

    assert conductor.server_groups.project_all() == 1
    assert kube.server_groups[("default", "web")]["status"] == {
        "memberCount": 3,
        "hosts": {"h1": 2, "h2": 1},
    }

    kube.calls.clear()
    assert conductor.server_groups.project_all() == 0
    assert kube.calls == {}  # remembered: no GET, no PATCH

    # The member on h2 is deleted: h2 leaves the map (patched to null), the count drops.
    with db_engine.transaction(db_session_factory) as session:
        db_api.server_group_remove_member(session, placed[2])
        db_api.instance_soft_delete(session, placed[2])
    assert conductor.server_groups.project_all() == 1
    assert kube.server_groups[("default", "web")]["status"] == {
        "memberCount": 2,
        "hosts": {"h1": 2},
    }


def test_a_group_whose_object_is_gone_is_skipped_and_others_are_written(
    db_session_factory: db_engine.SessionFactory, kube: RecordingKube, conductor: Conductor
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    gone, kept = _group(db_session_factory, "gone"), _group(db_session_factory, "kept")
    kube.add_server_group("default", "kept")
    for group in (gone, kept):
        assert claim(db_session_factory, make_instance(db_session_factory), "h1", group)

    assert conductor.server_groups.project_all() == 1
    assert kube.server_groups[("default", "kept")]["status"] == {
        "memberCount": 1,
        "hosts": {"h1": 1},
    }
    assert ("default", "gone") not in kube.server_groups

    # The missing object is remembered, not read again every pass.
    kube.calls.clear()
    assert conductor.server_groups.project_all() == 0
    assert kube.calls == {}


def test_usage_counts_unplaced_members_but_no_host_for_them(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    group = _group(db_session_factory, "mixed")
    placed, waiting = make_instance(db_session_factory), make_instance(db_session_factory)
    assert claim(db_session_factory, placed, "h1", group)
    with db_engine.transaction(db_session_factory) as session:
        server_groups.add_member(
            session, group.id, waiting
        )  # a member the scheduler has not placed
        usages = {u.name: u for u in db_api.server_group_usage_all(session)}
    assert usages["mixed"].member_count == 2
    assert usages["mixed"].hosts == {"h1": 1}
