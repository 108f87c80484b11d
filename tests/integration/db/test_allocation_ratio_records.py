"""A host's allocation ratios as an administrator sets them on its compute node: recorded under
the row's lock, moving ``generation`` as an inventory change does, and kept by its reports."""

from __future__ import annotations

import pytest

from kubenova import placement
from kubenova.db import api
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import make_host, node, recorded_statements, verbs

pytestmark = pytest.mark.integration

STRICT = placement.AllocationRatios(cpu=1.0, memory=0.9, disk=1.5)


def _set(
    session_factory: db_engine.SessionFactory, host: str, ratios: placement.AllocationRatios
) -> bool:
    with db_engine.transaction(session_factory) as session:
        return api.compute_node_set_allocation_ratios(session, host, ratios) is not None


def test_ratios_are_recorded_and_move_the_generation_only_when_they_change(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    generation = node(db_session_factory, "h1").generation

    assert _set(db_session_factory, "h1", STRICT)
    recorded = node(db_session_factory, "h1")
    assert (
        recorded.cpu_allocation_ratio,
        recorded.ram_allocation_ratio,
        recorded.disk_allocation_ratio,
    ) == STRICT
    assert recorded.generation == generation + 1

    with recorded_statements(db_session_factory) as sent:
        assert _set(db_session_factory, "h1", STRICT)
    assert verbs(sent) == ["SELECT"]  # the locking read; nothing to write
    assert node(db_session_factory, "h1").generation == generation + 1


def test_a_host_with_no_compute_node_has_no_ratios_to_set(
    db_session_factory: db_engine.SessionFactory,
) -> None:
    assert not _set(db_session_factory, "nowhere", STRICT)


def test_the_hosts_next_report_keeps_them(db_session_factory: db_engine.SessionFactory) -> None:
    make_host(db_session_factory, "h1", vcpus=8, memory_mib=8192, local_gb=100)
    _set(db_session_factory, "h1", STRICT)

    make_host(db_session_factory, "h1", vcpus=16, memory_mib=8192, local_gb=100)

    reported = node(db_session_factory, "h1")
    assert reported.vcpus == 16
    assert (
        reported.cpu_allocation_ratio,
        reported.ram_allocation_ratio,
        reported.disk_allocation_ratio,
    ) == STRICT
