"""Claims never overcommit a host, however many race, and claim/release are idempotent."""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import math
import pathlib
import subprocess
import sys
import threading
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from kubenova import placement
from kubenova.db import api, models
from kubenova.db import engine as db_engine
from kubenova.scheduler import filters, host_manager
from kubenova.scheduler.filters import (
    compute_filter,
    resource_filter,
    server_group_affinity_filter,
    server_group_anti_affinity_filter,
)
from kubenova.scheduler.host_state import RequestSpec
from tests.integration.db import claim_worker
from tests.integration.db.helpers import allocations_of, make_host, make_instance, node

pytestmark = pytest.mark.integration

FLAVOR = claim_worker.FLAVOR
REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]

# Each host is bounded by a different resource, for a flavor of 1 vCPU, 512 MiB, 1 GiB.
HOSTS: dict[str, dict[str, float]] = {
    # 2 vCPUs x 4.0 = 8; (4096 - 512) MiB = 7 instances: memory-bound, with a reservation.
    "host-mem": {"vcpus": 2, "memory_mib": 4096, "local_gb": 100, "reserved_host_memory_mib": 512},
    # 4 vCPUs x 1.0 = 4: CPU-bound.
    "host-cpu": {"vcpus": 4, "memory_mib": 8192, "local_gb": 100, "cpu_allocation_ratio": 1.0},
    # (10 - 5) GiB = 5: disk-bound, with a reservation.
    "host-disk": {"vcpus": 16, "memory_mib": 16384, "local_gb": 10, "reserved_host_disk_gib": 5},
    # 2048 MiB x 1.5 = 3072 MiB = 6: memory-bound through an overcommit ratio.
    "host-ratio": {"vcpus": 32, "memory_mib": 2048, "local_gb": 100, "ram_allocation_ratio": 1.5},
}


def _room(spec: dict[str, float]) -> int:
    """How many FLAVOR instances fit, by placement's formula, computed independently."""
    cpu = spec["vcpus"] * spec.get("cpu_allocation_ratio", 4.0) / FLAVOR["vcpus"]
    mem = (
        (spec["memory_mib"] - spec.get("reserved_host_memory_mib", 0))
        * spec.get("ram_allocation_ratio", 1.0)
        / FLAVOR["memory_mib"]
    )
    disk = (
        (spec["local_gb"] - spec.get("reserved_host_disk_gib", 0))
        * spec.get("disk_allocation_ratio", 1.0)
        / FLAVOR["disk_gib"]
    )
    return math.floor(min(cpu, mem, disk))


ROOM = {host: _room(spec) for host, spec in HOSTS.items()}


def _make_hosts(session_factory: db_engine.SessionFactory) -> None:
    for host, spec in HOSTS.items():
        extra = {k: v for k, v in spec.items() if k not in ("vcpus", "memory_mib", "local_gb")}
        make_host(
            session_factory,
            host,
            vcpus=int(spec["vcpus"]),
            memory_mib=int(spec["memory_mib"]),
            local_gb=int(spec["local_gb"]),
            **extra,
        )


def _allocated_by_host(session: sa.orm.Session) -> dict[str, api.Usage]:
    """The sum of the allocations on each live host (zero for an empty one), summed here
    rather than by the code under test."""
    rows = session.execute(
        sa.select(models.ComputeNode.host, models.Allocation.resource_class, models.Allocation.used)
        .select_from(models.ComputeNode)
        .outerjoin(models.Allocation, models.Allocation.compute_node_id == models.ComputeNode.id)
        .where(models.live(models.ComputeNode))
    ).all()
    sums: dict[str, collections.Counter[str]] = {}
    for host, resource_class, used in rows:
        sums.setdefault(host, collections.Counter())
        if resource_class is not None:
            sums[host][resource_class] += used
    return {
        host: api.Usage(
            vcpus=summed[models.VCPU],
            memory_mib=summed[models.MEMORY_MB],
            disk_gib=summed[models.DISK_GB],
        )
        for host, summed in sums.items()
    }


def _assert_consistent(session_factory: db_engine.SessionFactory) -> dict[str, api.Usage]:
    """*_used equals the sum of allocations on every host, and never exceeds capacity."""
    with db_engine.transaction(session_factory) as session:
        usage = _allocated_by_host(session)
        nodes = {n.node.host: n.node for n in api.compute_nodes_list(session)}
    assert set(usage) == set(nodes)
    for host, n in nodes.items():
        assert (n.vcpus_used, n.memory_mib_used, n.local_gb_used) == (
            usage[host].vcpus,
            usage[host].memory_mib,
            usage[host].disk_gib,
        ), host
        assert _within_capacity(n), host
    return usage


def _within_capacity(n: models.ComputeNode) -> bool:
    """Every resource's usage is within what placement allows to be allocated."""
    return (
        n.vcpus_used <= placement.allocatable(n.vcpus, 0, n.cpu_allocation_ratio)
        and n.memory_mib_used
        <= placement.allocatable(n.memory_mib, n.reserved_host_memory_mib, n.ram_allocation_ratio)
        and n.local_gb_used
        <= placement.allocatable(n.local_gb, n.reserved_host_disk_gib, n.disk_allocation_ratio)
    )


def test_room_per_host_is_what_the_test_expects():
    # Guards the expectations below against an edit of HOSTS that makes them meaningless.
    assert ROOM == {"host-mem": 7, "host-cpu": 4, "host-disk": 5, "host-ratio": 6}


def test_racing_claims_from_threads_and_processes_fill_hosts_exactly(db_url, db_session_factory):
    _make_hosts(db_session_factory)
    instances = [make_instance(db_session_factory) for _ in range(200)]
    local, remote = instances[:100], instances[100:]
    hosts = ",".join(HOSTS)

    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.db.claim_worker",
                db_url,
                "--threads=4",
                f"--hosts={hosts}",
                f"--instances={','.join(chunk)}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,  # where the tests package is importable from
        )
        for chunk in (remote[:50], remote[50:])
    ]
    over_capacity: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        # Reads usage while the race runs: capacity must hold at every instant, not only at
        # the end.
        while not stop.is_set():
            with db_engine.transaction(db_session_factory) as session:
                for record in api.compute_nodes_list(session):
                    n = record.node
                    if not _within_capacity(n):
                        over_capacity.append(f"{n.host}: {n.vcpus_used}/{n.memory_mib_used}")

    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        watcher = threading.Thread(target=watch)
        watcher.start()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = claim_worker.race(db_session_factory, local, list(HOSTS), threads=8)
        for worker in workers:
            out, _ = worker.communicate(timeout=300)
            assert worker.returncode == 0
            results.update(json.loads(out))
    finally:
        stop.set()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    watcher.join()
    assert over_capacity == []
    assert len(results) == 200
    placed = collections.Counter(host for host in results.values() if host is not None)
    assert dict(placed) == ROOM
    assert sum(placed.values()) == sum(ROOM.values())

    usage = _assert_consistent(db_session_factory)
    assert {host: u.vcpus for host, u in usage.items()} == ROOM
    with db_engine.transaction(db_session_factory) as session:
        for uuid, host in results.items():
            allocations = allocations_of(session, uuid)
            instance = api.instance_get(session, uuid)
            assert instance is not None
            assert instance.host == host
            assert len(allocations) == (3 if host else 0)


def test_racing_claims_of_one_instance_count_it_once(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=8, memory_mib=8192, local_gb=100)
    uuid = make_instance(db_session_factory)
    barrier = threading.Barrier(8)
    outcomes: list[api.ClaimResult] = []

    def claim() -> None:
        barrier.wait(timeout=30)
        outcomes.append(api.claim_resources(db_session_factory, uuid, "host-a", 2, 1024, 10))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert outcomes == [api.CLAIMED] * 8
    n = node(db_session_factory, "host-a")
    assert (n.vcpus_used, n.memory_mib_used, n.local_gb_used) == (2, 1024, 10)
    _assert_consistent(db_session_factory)


def test_claim_is_idempotent_on_the_same_host(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=4, memory_mib=4096, local_gb=40)
    uuid = make_instance(db_session_factory)

    assert api.claim_resources(db_session_factory, uuid, "host-a", 1, 512, 1)
    generation = node(db_session_factory, "host-a").generation
    assert api.claim_resources(db_session_factory, uuid, "host-a", 1, 512, 1)

    n = node(db_session_factory, "host-a")
    assert (n.vcpus_used, n.memory_mib_used, n.local_gb_used) == (1, 512, 1)
    assert n.generation == generation
    with db_engine.transaction(db_session_factory) as session:
        allocations = allocations_of(session, uuid)
        instance = api.instance_get(session, uuid)
    assert sorted((a.resource_class, a.used) for a in allocations) == [
        (models.DISK_GB, 1),
        (models.MEMORY_MB, 512),
        (models.VCPU, 1),
    ]
    assert instance is not None
    assert (instance.host, instance.node) == ("host-a", "host-a")


def test_claim_elsewhere_while_holding_a_claim_is_refused(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=4, memory_mib=4096, local_gb=40)
    make_host(db_session_factory, "host-b", vcpus=4, memory_mib=4096, local_gb=40)
    uuid = make_instance(db_session_factory)
    assert api.claim_resources(db_session_factory, uuid, "host-a", 1, 512, 1)

    with pytest.raises(api.AllocationConflictError):
        api.claim_resources(db_session_factory, uuid, "host-b", 1, 512, 1)
    with pytest.raises(api.AllocationConflictError):
        api.claim_resources(db_session_factory, uuid, "host-a", 2, 512, 1)

    assert node(db_session_factory, "host-b").vcpus_used == 0
    assert node(db_session_factory, "host-a").vcpus_used == 1


def test_claim_that_does_not_fit_changes_nothing(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=1, memory_mib=1024, local_gb=10)
    uuid = make_instance(db_session_factory)
    before = node(db_session_factory, "host-a")

    # 1 vCPU x 4.0 = 4 vCPUs fit, 5 do not.
    refused = api.claim_resources(db_session_factory, uuid, "host-a", 5, 512, 1)
    assert not refused
    assert refused.refusal == "insufficient vcpu"
    unknown = api.claim_resources(db_session_factory, uuid, "no-such-host", 1, 512, 1)
    assert unknown.refusal == "not registered"

    after = node(db_session_factory, "host-a")
    assert (after.vcpus_used, after.generation) == (0, before.generation)
    with db_engine.transaction(db_session_factory) as session:
        assert allocations_of(session, uuid) == []
        instance = api.instance_get(session, uuid)
        assert instance is not None
        assert instance.host is None
    assert api.claim_resources(db_session_factory, uuid, "host-a", 4, 1024, 10)


@pytest.mark.parametrize(
    ("wanted", "refusal"),
    [
        # Memory is named first when several are short, as the ResourceFilter names it.
        ((9, 4096, 100), "insufficient memory"),
        ((9, 1024, 10), "insufficient vcpu"),
        ((1, 1024, 11), "insufficient disk"),
    ],
)
def test_a_refused_claim_names_what_the_host_is_short_of(db_session_factory, wanted, refusal):
    # 2 vCPUs x 4.0 = 8 vCPUs; (3072 - 1024) MiB; (40 - 30) GiB.
    make_host(
        db_session_factory,
        "host-a",
        vcpus=2,
        memory_mib=3072,
        local_gb=40,
        reserved_host_memory_mib=1024,
        reserved_host_disk_gib=30,
    )
    uuid = make_instance(db_session_factory)
    assert api.claim_resources(db_session_factory, uuid, "host-a", *wanted).refusal == refusal
    # Exactly the room there is still fits: the refusal was about the amounts.
    assert api.claim_resources(db_session_factory, uuid, "host-a", 8, 2048, 10) == api.CLAIMED


# Allocatable: 3 vCPUs x 1.5 = 4.5; (3000 - 1000) MiB x 1.5 = 3000; (100 - 10) GiB x 1.1 =
# 99.00000000000001 in floating point.
BOUNDARY_HOST = {
    "vcpus": 3,
    "memory_mib": 3000,
    "local_gb": 100,
    "cpu_allocation_ratio": 1.5,
    "ram_allocation_ratio": 1.5,
    "disk_allocation_ratio": 1.1,
    "reserved_host_memory_mib": 1000,
    "reserved_host_disk_gib": 10,
}


@pytest.mark.parametrize(
    ("wanted", "refusal"),
    [
        ((4, 3000, 99), None),
        ((5, 3000, 99), placement.REFUSED_NO_VCPU),
        ((4, 3001, 99), placement.REFUSED_NO_MEMORY),
        ((4, 3000, 100), placement.REFUSED_NO_DISK),
    ],
    ids=["all-room", "one-vcpu-more", "one-mib-more", "one-gib-more"],
)
def test_the_claim_and_the_resource_filter_draw_the_same_boundary(
    db_session_factory, wanted, refusal
):
    make_host(db_session_factory, "host-a", **BOUNDARY_HOST)
    uuid = make_instance(db_session_factory)
    [host_state] = host_manager.load_host_states(db_session_factory)
    vcpus, memory_mib, disk_gib = wanted
    spec = RequestSpec(uuid, vcpus, memory_mib, disk_gib)
    context = filters.FilterContext(now=dt.datetime.now(dt.UTC))

    filtered = resource_filter.ResourceFilter().host_passes(host_state, spec, context)
    claimed = api.claim_resources(db_session_factory, uuid, "host-a", *wanted)

    assert (filtered.passed, filtered.reason or None) == (refusal is None, refusal)
    assert claimed.refusal == refusal


def test_claim_refusals_are_worded_as_the_filters_word_their_rejections():
    # One explanation counts filter rejections and refused claims together.
    assert resource_filter.NO_MEMORY.reason == placement.REFUSED_NO_MEMORY
    assert resource_filter.NO_VCPU.reason == placement.REFUSED_NO_VCPU
    assert resource_filter.NO_DISK.reason == placement.REFUSED_NO_DISK
    assert compute_filter.DISABLED.reason == placement.REFUSED_DISABLED
    assert server_group_affinity_filter.NOT_WITH_GROUP.reason == placement.POLICY_AFFINITY
    assert server_group_anti_affinity_filter.WITH_GROUP.reason == placement.POLICY_ANTI_AFFINITY


def test_a_disabled_host_takes_no_new_claim_and_keeps_what_it_holds(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=4, memory_mib=4096, local_gb=40)
    held = make_instance(db_session_factory)
    assert api.claim_resources(db_session_factory, held, "host-a", 1, 512, 1)
    with db_engine.transaction(db_session_factory) as session:
        api.compute_node_set_disabled(session, "host-a", True, "maintenance")

    new = make_instance(db_session_factory)
    assert api.claim_resources(db_session_factory, new, "host-a", 1, 512, 1).refusal == "disabled"
    # The claim it already holds still stands, and repeating it is still claimed.
    assert api.claim_resources(db_session_factory, held, "host-a", 1, 512, 1) == api.CLAIMED
    n = node(db_session_factory, "host-a")
    assert (n.vcpus_used, n.memory_mib_used, n.local_gb_used) == (1, 512, 1)
    with db_engine.transaction(db_session_factory) as session:
        assert allocations_of(session, new) == []

    with db_engine.transaction(db_session_factory) as session:
        api.compute_node_set_disabled(session, "host-a", False, None)
    assert api.claim_resources(db_session_factory, new, "host-a", 1, 512, 1)


def test_claim_for_an_unknown_or_deleted_instance_is_refused(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=4, memory_mib=4096, local_gb=40)
    uuid = make_instance(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, uuid)

    for candidate in (uuid, str(uuidlib.uuid4())):
        with pytest.raises(api.InstanceNotFoundError):
            api.claim_resources(db_session_factory, candidate, "host-a", 1, 512, 1)
    assert node(db_session_factory, "host-a").vcpus_used == 0


def test_release_frees_the_claim_once(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=4, memory_mib=4096, local_gb=40)
    keep, free = make_instance(db_session_factory), make_instance(db_session_factory)
    assert api.claim_resources(db_session_factory, keep, "host-a", 1, 512, 1)
    assert api.claim_resources(db_session_factory, free, "host-a", 2, 1024, 5)

    assert api.release_resources(db_session_factory, free) is True
    assert api.release_resources(db_session_factory, free) is False

    n = node(db_session_factory, "host-a")
    assert (n.vcpus_used, n.memory_mib_used, n.local_gb_used) == (1, 512, 1)
    _assert_consistent(db_session_factory)
    with db_engine.transaction(db_session_factory) as session:
        assert allocations_of(session, free) == []
        assert len(allocations_of(session, keep)) == 3
        instance = api.instance_get(session, free)
        assert instance is not None
        assert instance.host == "host-a"


def test_release_with_clear_host_and_after_soft_delete(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=4, memory_mib=4096, local_gb=40)
    rescheduled, deleted = make_instance(db_session_factory), make_instance(db_session_factory)
    for uuid in (rescheduled, deleted):
        assert api.claim_resources(db_session_factory, uuid, "host-a", 1, 512, 1)
    with db_engine.transaction(db_session_factory) as session:
        api.instance_soft_delete(session, deleted)

    assert api.release_resources(db_session_factory, rescheduled, clear_host=True)
    assert api.release_resources(db_session_factory, deleted)
    assert api.release_resources(db_session_factory, str(uuidlib.uuid4())) is False

    assert node(db_session_factory, "host-a").vcpus_used == 0
    with db_engine.transaction(db_session_factory) as session:
        instance = api.instance_get(session, rescheduled)
        assert instance is not None
        assert (instance.host, instance.node) == (None, None)


def test_racing_claims_and_releases_keep_counters_equal_to_allocations(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=2, memory_mib=2048, local_gb=20)
    instances = [make_instance(db_session_factory) for _ in range(24)]
    errors: list[BaseException] = []

    def churn(uuids: list[str]) -> None:
        try:
            for _ in range(3):
                for uuid in uuids:
                    api.claim_resources(db_session_factory, uuid, "host-a", 1, 512, 1)
                for uuid in uuids[::2]:
                    api.release_resources(db_session_factory, uuid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(instances[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    usage = _assert_consistent(db_session_factory)
    assert usage["host-a"].memory_mib <= 2048
    with db_engine.transaction(db_session_factory) as session:
        holders = [u for u in instances if allocations_of(session, u)]
    assert len(holders) * 512 == usage["host-a"].memory_mib


def _bump_running_vms(session: sa.orm.Session, host: str) -> None:
    session.execute(
        sa.update(models.ComputeNode)
        .where(models.ComputeNode.host == host)
        .values(running_vms=models.ComputeNode.running_vms + 1)
    )


def test_a_real_deadlock_is_retried_to_success(db_session_factory, caplog):
    make_host(db_session_factory, "host-a", vcpus=1, memory_mib=512, local_gb=1)
    make_host(db_session_factory, "host-b", vcpus=1, memory_mib=512, local_gb=1)
    both_hold_one_lock = threading.Barrier(2)
    attempts: collections.Counter[str] = collections.Counter()
    errors: list[BaseException] = []

    @db_engine.retry_on_deadlock(max_attempts=3, base_delay=0.01)
    def lock_both(name: str, first: str, second: str) -> None:
        attempts[name] += 1
        with db_engine.transaction(db_session_factory) as session:
            _bump_running_vms(session, first)
            if attempts[name] == 1:
                both_hold_one_lock.wait(timeout=30)
            # Each transaction now waits for the other's row: InnoDB kills one (1213).
            _bump_running_vms(session, second)

    def run(*args: str) -> None:
        try:
            lock_both(*args)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("ab", "host-a", "host-b")),
        threading.Thread(target=run, args=("ba", "host-b", "host-a")),
    ]
    with caplog.at_level(logging.WARNING, logger="kubenova.db.engine"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert errors == []
    assert sum(attempts.values()) == 3  # one of the two ran twice
    assert any("MySQL error 1213" in r.getMessage() for r in caplog.records)
    # Both transactions committed exactly once.
    assert node(db_session_factory, "host-a").running_vms == 2
    assert node(db_session_factory, "host-b").running_vms == 2


def test_a_lock_wait_timeout_is_retried_to_success(db_session_factory):
    make_host(db_session_factory, "host-a", vcpus=1, memory_mib=512, local_gb=1)
    locked = threading.Event()
    attempts: list[int] = []

    def hold_lock() -> None:
        with db_engine.transaction(db_session_factory) as session:
            _bump_running_vms(session, "host-a")
            locked.set()
            # Longer than the 1 s lock wait timeout below, shorter than two of them.
            threading.Event().wait(1.5)

    @db_engine.retry_on_deadlock(max_attempts=3, base_delay=0.01)
    def bump() -> None:
        attempts.append(1)
        with db_engine.transaction(db_session_factory) as session:
            session.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 1"))
            _bump_running_vms(session, "host-a")

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(timeout=30)
    bump()
    holder.join()

    assert len(attempts) == 2
    assert node(db_session_factory, "host-a").running_vms == 2
