"""Claims into a server group enforce its hard policy in the claim's own transaction, however
many claims race, from threads or from other processes."""

from __future__ import annotations

import collections
import json
import pathlib
import subprocess
import sys
import threading
import uuid as uuid_module

import pytest
import sqlalchemy as sa

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.db import claim_worker
from tests.integration.db.helpers import (
    allocations_of,
    claim,
    instance_fields,
    make_group,
    make_host,
    make_instance,
    member_hosts,
    members,
    node,
    soft_delete_group,
)

pytestmark = pytest.mark.integration

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
# Room for 16 instances of the test flavor on each: only the group's policy can refuse.
HOSTS = ("h1", "h2", "h3", "h4", "h5")


def _hosts(session_factory, *hosts: str) -> None:
    for host in hosts:
        make_host(session_factory, host, vcpus=4, memory_mib=8192, local_gb=100)


def _unchanged_by_refusal(session_factory, uuid: str, host: str, generation: int) -> None:
    assert node(session_factory, host).generation == generation
    with db_engine.transaction(session_factory) as session:
        assert allocations_of(session, uuid) == []
        instance = api.instance_get(session, uuid)
    assert instance is not None
    assert instance.host is None


def test_anti_affinity_refuses_a_second_member_on_a_host_and_changes_nothing(
    db_session_factory,
):
    _hosts(db_session_factory, "h1", "h2")
    group = make_group(db_session_factory, "anti-affinity")
    first, second = make_instance(db_session_factory), make_instance(db_session_factory)
    assert claim(db_session_factory, first, "h1", group)
    generation = node(db_session_factory, "h1").generation

    assert claim(db_session_factory, second, "h1", group).refusal == "anti-affinity"

    _unchanged_by_refusal(db_session_factory, second, "h1", generation)
    assert node(db_session_factory, "h1").vcpus_used == 1
    assert members(db_session_factory, group.id) == [first]
    assert claim(db_session_factory, second, "h2", group)
    assert member_hosts(db_session_factory, group.id) == {"h1": 1, "h2": 1}


def test_anti_affinity_with_max_server_per_host_allows_that_many(db_session_factory):
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity", max_server_per_host=2)
    vms = [make_instance(db_session_factory) for _ in range(3)]

    outcomes = [claim(db_session_factory, vm, "h1", group) for vm in vms]

    assert [outcome.refusal for outcome in outcomes] == [None, None, "anti-affinity"]
    assert member_hosts(db_session_factory, group.id) == {"h1": 2}
    assert node(db_session_factory, "h1").vcpus_used == 2


def test_affinity_refuses_any_host_but_the_members_one(db_session_factory):
    _hosts(db_session_factory, "h1", "h2")
    group = make_group(db_session_factory, "affinity")
    first, other, same = (make_instance(db_session_factory) for _ in range(3))
    assert claim(db_session_factory, first, "h2", group)
    generation = node(db_session_factory, "h1").generation

    assert claim(db_session_factory, other, "h1", group).refusal == "affinity"

    _unchanged_by_refusal(db_session_factory, other, "h1", generation)
    assert claim(db_session_factory, same, "h2", group)
    assert claim(db_session_factory, other, "h2", group)
    assert member_hosts(db_session_factory, group.id) == {"h2": 3}


@pytest.mark.parametrize("policy", ["soft-affinity", "soft-anti-affinity"])
def test_soft_policies_never_refuse(db_session_factory, policy):
    _hosts(db_session_factory, "h1", "h2")
    group = make_group(db_session_factory, policy)
    placement = ["h1", "h1", "h2", "h1", "h2"]

    outcomes = [
        claim(db_session_factory, make_instance(db_session_factory), host, group)
        for host in placement
    ]

    assert outcomes == [api.CLAIMED] * 5
    assert member_hosts(db_session_factory, group.id) == {"h1": 3, "h2": 2}


def test_a_repeated_claim_is_true_and_one_membership_even_after_the_rule_tightened(
    db_session_factory,
):
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity", max_server_per_host=2)
    first, second = make_instance(db_session_factory), make_instance(db_session_factory)
    assert claim(db_session_factory, first, "h1", group)
    assert claim(db_session_factory, second, "h1", group)
    tightened = make_group(
        db_session_factory, "anti-affinity", uuid=group.uuid, name=group.name
    )  # max_server_per_host back to 1: h1 now holds one member too many.

    assert claim(db_session_factory, second, "h1", tightened)
    assert claim(db_session_factory, second, "h1", tightened)

    assert members(db_session_factory, group.id) == [first, second]
    assert node(db_session_factory, "h1").vcpus_used == 2
    assert not claim(db_session_factory, make_instance(db_session_factory), "h1", tightened)


def test_an_instance_holding_a_claim_joins_a_group_only_if_the_policy_allows(
    db_session_factory,
):
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity")
    member, outsider = make_instance(db_session_factory), make_instance(db_session_factory)
    assert claim(db_session_factory, member, "h1", group)
    assert claim(db_session_factory, outsider, "h1")  # outside any group

    assert not claim(db_session_factory, outsider, "h1", group)
    assert members(db_session_factory, group.id) == [member]

    other_group = make_group(db_session_factory, "anti-affinity")
    assert claim(db_session_factory, outsider, "h1", other_group)
    assert members(db_session_factory, other_group.id) == [outsider]
    assert node(db_session_factory, "h1").vcpus_used == 2


def test_a_rescheduled_member_does_not_count_against_itself(db_session_factory):
    _hosts(db_session_factory, "h1", "h2")
    group = make_group(db_session_factory, "affinity")
    vm = make_instance(db_session_factory)
    assert claim(db_session_factory, vm, "h1", group)

    # Released but still recorded on h1 (no clear_host): its own record must not pin the
    # group to h1.
    assert api.release_resources(db_session_factory, vm)
    assert claim(db_session_factory, vm, "h2", group)

    assert members(db_session_factory, group.id) == [vm]
    assert member_hosts(db_session_factory, group.id) == {"h2": 1}


def test_a_claim_that_does_not_fit_adds_no_member(db_session_factory):
    make_host(db_session_factory, "tiny", vcpus=1, memory_mib=512, local_gb=1)
    group = make_group(db_session_factory, "soft-anti-affinity")
    vm = make_instance(db_session_factory)

    assert not api.claim_resources(
        db_session_factory,
        vm,
        "tiny",
        1,
        1024,
        1,
        server_group=api.ServerGroupClaim(group.id, group.policy),
    )

    assert members(db_session_factory, group.id) == []


def test_a_claim_into_a_deleted_group_is_refused_with_an_error(db_session_factory):
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity")
    soft_delete_group(db_session_factory, group.uuid)
    vm = make_instance(db_session_factory)

    with pytest.raises(api.ServerGroupNotFoundError):
        claim(db_session_factory, vm, "h1", group)
    with pytest.raises(api.ServerGroupNotFoundError):
        api.claim_resources(
            db_session_factory,
            vm,
            "h1",
            1,
            512,
            1,
            server_group=api.ServerGroupClaim(10**6, "affinity"),
        )

    assert node(db_session_factory, "h1").vcpus_used == 0


def test_the_locked_row_decides_not_the_schedulers_copy(db_session_factory):
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity")
    assert claim(db_session_factory, make_instance(db_session_factory), "h1", group)
    stale = api.ServerGroupClaim(group.id, "soft-anti-affinity")

    assert not api.claim_resources(
        db_session_factory, make_instance(db_session_factory), "h1", 1, 512, 1, server_group=stale
    )


def _race(db_url, session_factory, instances, group, *, process_share: int):
    """Claim ``instances`` (entries ``uuid`` or ``uuid@host``): the last ``process_share``
    from a second process (4 threads), the rest from 8 threads here, all started at once."""
    local, remote = instances[:-process_share], instances[-process_share:]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.db.claim_worker",
            db_url,
            "--threads=4",
            f"--hosts={','.join(HOSTS)}",
            f"--instances={','.join(remote)}",
            f"--group-id={group.id}",
            f"--policy={group.policy}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,  # where the tests package is importable from
    )
    try:
        assert worker.stdout is not None
        assert worker.stdin is not None
        assert worker.stdout.readline().strip() == "ready"
        worker.stdin.write("go\n")
        worker.stdin.flush()
        results = claim_worker.race(
            session_factory,
            local,
            HOSTS,
            threads=8,
            server_group=api.ServerGroupClaim.from_group(group),
        )
        out, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0
        results.update(json.loads(out))
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert len(results) == len(instances)
    return results


def _consistent(session_factory) -> None:
    with db_engine.transaction(session_factory) as session:
        assert api.usage_audit(session) == []


def test_racing_anti_affinity_claims_place_exactly_one_member_per_host(db_url, db_session_factory):
    _hosts(db_session_factory, *HOSTS)
    group = make_group(db_session_factory, "anti-affinity")
    instances = [make_instance(db_session_factory) for _ in range(30)]

    # Every instance tries every host, in its own random order.
    results = _race(db_url, db_session_factory, instances, group, process_share=15)

    placed = collections.Counter(host for host in results.values() if host is not None)
    assert dict(placed) == dict.fromkeys(HOSTS, 1)
    assert member_hosts(db_session_factory, group.id) == dict.fromkeys(HOSTS, 1)
    assert sorted(members(db_session_factory, group.id)) == sorted(
        uuid for uuid, host in results.items() if host is not None
    )
    assert {h: node(db_session_factory, h).vcpus_used for h in HOSTS} == dict.fromkeys(HOSTS, 1)
    _consistent(db_session_factory)


def test_racing_first_affinity_claims_on_different_hosts_end_on_one_host(
    db_url, db_session_factory
):
    _hosts(db_session_factory, *HOSTS)
    group = make_group(db_session_factory, "affinity")
    instances = [make_instance(db_session_factory) for _ in range(30)]
    # Six instances per host, each claiming its own host only.
    assigned = {uuid: HOSTS[i % len(HOSTS)] for i, uuid in enumerate(instances)}

    results = _race(
        db_url,
        db_session_factory,
        [f"{uuid}@{host}" for uuid, host in assigned.items()],
        group,
        process_share=15,
    )

    winners = {host for host in results.values() if host is not None}
    assert len(winners) == 1
    (winner,) = winners
    # The first claim chose the host; every instance sent there joined it, no other did.
    assert sorted(u for u, h in results.items() if h is not None) == sorted(
        u for u, h in assigned.items() if h == winner
    )
    assert member_hosts(db_session_factory, group.id) == {winner: 6}
    assert {h: node(db_session_factory, h).vcpus_used for h in HOSTS} == {
        h: 6 if h == winner else 0 for h in HOSTS
    }
    _consistent(db_session_factory)


def test_racing_affinity_claims_that_try_every_host_all_land_on_one(db_url, db_session_factory):
    _hosts(db_session_factory, *HOSTS)
    group = make_group(db_session_factory, "affinity")
    instances = [make_instance(db_session_factory) for _ in range(15)]

    results = _race(db_url, db_session_factory, instances, group, process_share=7)

    assert None not in results.values()
    assert len(set(results.values())) == 1
    assert sum(member_hosts(db_session_factory, group.id).values()) == 15
    _consistent(db_session_factory)


def test_the_group_row_lock_serializes_one_group_and_only_that_group(db_session_factory):
    _hosts(db_session_factory, "h1", "h2")
    locked, free = (make_group(db_session_factory, "anti-affinity") for _ in range(2))
    into_locked, into_free = make_instance(db_session_factory), make_instance(db_session_factory)
    done: dict[str, api.ClaimResult] = {}

    def run(name: str, uuid: str, group) -> None:
        done[name] = claim(db_session_factory, uuid, "h1", group)

    blocked = threading.Thread(target=run, args=("locked", into_locked, locked))
    with db_engine.transaction(db_session_factory) as session:
        # Another transaction holding the group row, as a claim of that group does.
        session.execute(
            sa.select(models.ServerGroup.id)
            .where(models.ServerGroup.id == locked.id)
            .with_for_update()
        )
        blocked.start()
        assert run("free", into_free, free) is None  # returns at once: another group
        blocked.join(timeout=1.0)
        assert blocked.is_alive()  # waits for the lock
        assert "locked" not in done
    blocked.join(timeout=30)

    assert done == {"free": api.CLAIMED, "locked": api.CLAIMED}


class _Recorder:
    """Inserts the instance's record in the claim's transaction, as a first try does."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self.calls = 0

    def __call__(self, session, placed) -> None:
        self.calls += 1
        _record, created = api.instance_insert(session, **instance_fields(self.uuid), placed=placed)
        assert created


def _claim_recording(session_factory, recorder: _Recorder, host: str, group) -> bool:
    return api.claim_resources(
        session_factory,
        recorder.uuid,
        host,
        1,
        512,
        1,
        server_group=api.ServerGroupClaim.from_group(group),
        record=recorder,
    )


def test_a_claim_that_records_its_instance_joins_the_group_and_obeys_it(db_session_factory):
    _hosts(db_session_factory, "h1", "h2")
    group = make_group(db_session_factory, "anti-affinity")
    first = make_instance(db_session_factory)
    assert claim(db_session_factory, first, "h1", group)
    recorder = _Recorder(str(uuid_module.uuid4()))

    # Refused on the member's host: nothing recorded, nothing claimed.
    assert not _claim_recording(db_session_factory, recorder, "h1", group)
    assert recorder.calls == 0
    with db_engine.transaction(db_session_factory) as session:
        assert api.instance_get(session, recorder.uuid) is None
    assert node(db_session_factory, "h1").vcpus_used == 1

    assert _claim_recording(db_session_factory, recorder, "h2", group)
    assert recorder.calls == 1
    assert member_hosts(db_session_factory, group.id) == {"h1": 1, "h2": 1}
    with db_engine.transaction(db_session_factory) as session:
        record = api.instance_get(session, recorder.uuid)
        assert record is not None
        assert (record.host, record.node) == ("h2", "h2")
        assert len(allocations_of(session, recorder.uuid)) == 3


def test_a_record_that_fails_undoes_the_claim(db_session_factory):
    _hosts(db_session_factory, "h1")
    group = make_group(db_session_factory, "anti-affinity")
    uuid = str(uuid_module.uuid4())
    generation = node(db_session_factory, "h1").generation

    def failing(session, placed) -> None:
        api.instance_insert(session, **instance_fields(uuid), placed=placed)
        raise RuntimeError("say the record existed after all")

    with pytest.raises(RuntimeError):
        api.claim_resources(
            db_session_factory,
            uuid,
            "h1",
            1,
            512,
            1,
            server_group=api.ServerGroupClaim.from_group(group),
            record=failing,
        )

    h1 = node(db_session_factory, "h1")
    assert (h1.vcpus_used, h1.generation) == (0, generation)
    assert members(db_session_factory, group.id) == []
    with db_engine.transaction(db_session_factory) as session:
        assert api.instance_get(session, uuid) is None
        assert allocations_of(session, uuid) == []
