"""The scheduler benchmark's overcommit check reads MariaDB right: on a scratch database
holding overcommitted compute nodes (which the scheduler never leaves, so no benchmark run
can show the check failing), ``node_usage`` + ``overcommitted`` name exactly them. A check
that read the wrong column, forgot the allocation ratio or the reservation, or left the
allocations out would pass every benchmark run and fail here."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from kubenova.db import engine as db_engine
from kubenova.db import models
from tests.support.bench import bench_module

pytestmark = pytest.mark.integration

host_usage = bench_module("host_usage")
bench_creates = bench_module("bench_creates")

#: A default benchmark host: 4 vCPUs (x 4.0), 2048 MiB, 20 GiB.
HOST = {"vcpus": 4, "memory_mib": 2048, "local_gb": 20}
#: The default run's flavor: 1 vCPU, 204 MiB, 1 GiB.
FLAVOR = (1, 204, 1)


def add_node(
    session,
    host: str,
    instances: int,
    *,
    used: tuple[int, int, int] | None = None,
    flavor: tuple[int, int, int] = FLAVOR,
    deleted: bool = False,
    **columns,
) -> None:
    """A compute node holding ``instances`` of ``flavor``, as a claim leaves it: one
    allocation per resource class per instance, ``*_used`` their sum unless ``used``."""
    values = {**HOST, **columns}
    node = models.ComputeNode(uuid=str(uuidlib.uuid4()), host=host, **values)
    session.add(node)
    session.flush()
    totals = tuple(instances * amount for amount in flavor)
    node.vcpus_used, node.memory_mib_used, node.local_gb_used = used or totals
    if deleted:
        node.deleted = node.id
    for _ in range(instances):
        instance = str(uuidlib.uuid4())
        for resource_class, amount in zip(host_usage.RESOURCES, flavor, strict=True):
            session.add(
                models.Allocation(
                    instance_uuid=instance,
                    compute_node_id=node.id,
                    resource_class=resource_class,
                    used=amount,
                )
            )
    session.flush()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def test_overcommitted_nodes_are_found_and_full_ones_are_not(
    db_session_factory: db_engine.SessionFactory, engine: sa.Engine
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        add_node(session, "bench-001", 10)  # full: 2040 of 2048 MiB
        add_node(session, "bench-002", 11)  # one instance too many: 2244 MiB
        # Allocations fit, but the *_used columns say more than the host has.
        add_node(session, "bench-003", 10, used=(10, 4096, 10))
        # 1600 MiB would fit 2048, not the 1536 left after the host's reservation.
        add_node(session, "bench-004", 0, used=(0, 1600, 0), reserved_host_memory_mib=512)
        # 17 vCPUs: over 4 x 4.0.
        add_node(session, "bench-005", 0, used=(17, 0, 0))
        # 5 vCPUs would fit 4 x 4.0, not 4 x 1.0.
        add_node(session, "bench-006", 5, cpu_allocation_ratio=1.0)
        add_node(session, "bench-007", 8, flavor=(2, 256, 2))  # exactly full: 16, 2048 MiB
        add_node(session, "bench-008", 12, deleted=True)  # a deleted record: not the host's
        add_node(session, "bench-008", 10)  # its live one
        add_node(session, "other-001", 12)  # not one of the benchmark's hosts

    hosts = [f"bench-{index:03d}" for index in range(1, 10)]
    nodes = host_usage.node_usage(engine, hosts)

    assert [n.host for n in nodes] == [f"bench-{index:03d}" for index in range(1, 9)]
    over = ["bench-002", "bench-003", "bench-004", "bench-005", "bench-006"]
    assert host_usage.overcommitted(nodes) == over
    # bench-003's *_used differ from its allocations; bench-004 and -005 have usage but no
    # allocations.
    assert host_usage.mismatched(nodes) == ["bench-003", "bench-004", "bench-005"]
    by_host = {n.host: n for n in nodes}
    assert by_host["bench-004"].capacity == (16.0, 1536.0, 20.0)
    assert by_host["bench-006"].capacity == (4.0, 2048.0, 20.0)
    assert by_host["bench-008"].allocated == (10, 2040, 10)


def test_fill_is_read_from_the_allocations(
    db_session_factory: db_engine.SessionFactory, engine: sa.Engine
) -> None:
    with db_engine.transaction(db_session_factory) as session:
        for index in range(1, 4):
            add_node(session, f"bench-{index:03d}", 10)
    nodes = host_usage.node_usage(engine, ["bench-001", "bench-002", "bench-003"])
    fills = host_usage.fill(nodes)
    assert fills["MEMORY_MB"] == pytest.approx(2040 / 2048)
    assert fills["VCPU"] == pytest.approx(10 / 16)
    assert fills["DISK_GB"] == pytest.approx(10 / 20)
    assert host_usage.fill_ratio(fills) >= bench_creates.FULL
    assert host_usage.overcommitted(nodes) == []
