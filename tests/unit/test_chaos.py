"""The chaos suite's counts and verdict (hack/chaos): the counts it takes from the apiserver,
MariaDB, the audits and libvirt, when it calls the stack converged, and the JSON line that says
pass or fail. Its proxy, plan and command line: test_chaos_plan.py. The faults themselves need
the stack: the suite is run by `make chaos`."""

from __future__ import annotations

import pytest

from tests.support.chaos import chaos_module

counts = chaos_module("counts")
converge = chaos_module("converge")
result = chaos_module("result")

HOST = "chaos-001"


def obj(uid, phase="Running", task_state=None, fault_reason=None):
    return counts.InstanceObject(f"i-{uid}", uid, phase, task_state, fault_reason)


def record(uuid, *, deleted=False, vm_state="active", task_state=None, host=HOST):
    return counts.InstanceRecord(uuid, deleted, vm_state, task_state, host)


def audit(host=HOST, *, up=True, exclusive=True, in_sync=True, missing=(), leftover=(), **more):
    return counts.HostAudit(
        host=host,
        up=up,
        exclusive=exclusive,
        audited=more.pop("audited", True),
        in_sync=in_sync,
        missing=frozenset(missing),
        unknown=frozenset(more.pop("unknown", ())),
        leftover=frozenset(leftover),
        usage_matches=more.pop("usage_matches", True),
    )


def observation(objects=None, records=None, audits=None, claims=(), hosts=(HOST,), domains=None):
    uids = ("a", "b")
    return counts.Observation(
        objects=[obj(u) for u in uids] if objects is None else objects,
        records=[record(u) for u in uids] if records is None else records,
        audits=[audit()] if audits is None else audits,
        claims=list(claims),
        hosts=list(hosts),
        domains=domains or {},
    )


# -- counts ---------------------------------------------------------------------------------


def test_a_converged_burst_counts_nothing_and_is_settled():
    seen = observation(claims=[counts.Claim("a", HOST, True)])
    found = counts.count(seen)
    assert (found.instances, found.running, found.failures(), found.not_running) == (2, 2, 0, 0)
    assert counts.unsettled(seen) == []


@pytest.mark.parametrize(
    "records",
    [
        [record("a")],  # b's object has no record
        [record("a"), record("b", deleted=True)],  # b's record is deleted, its object is not
        [record("a"), record("b"), record("c")],  # c's record has no object
    ],
)
def test_an_object_without_a_live_record_or_a_record_without_an_object_is_lost(records):
    assert counts.count(observation(records=records)).lost == 1


def test_a_claim_of_a_deleted_or_unknown_instance_is_an_orphan():
    claims = [
        counts.Claim("a", HOST, True),
        counts.Claim("gone", HOST, False),
        counts.Claim("gone", "chaos-002", False),
    ]
    assert counts.count(observation(claims=claims)).orphan_claims == 1


def test_a_task_state_left_in_a_record_or_an_object_is_stuck_and_unsettled():
    in_record = observation(records=[record("a", task_state="spawning"), record("b")])
    in_object = observation(objects=[obj("a"), obj("b", task_state="deleting")])
    for seen in (in_record, in_object):
        assert counts.count(seen).stuck == 1
        assert "1 instances in a task state" in counts.unsettled(seen)


def test_a_leftover_domain_of_the_burst_is_a_duplicate_another_namespaces_is_not():
    seen = observation(audits=[audit(in_sync=False, leftover=("a", "elsewhere"))])
    assert counts.count(seen).duplicate_domains == 1
    assert counts.unsettled(seen) == [f"audits with differences: {HOST}"]


def test_a_real_hosts_domains_tell_duplicates_and_missing_ones():
    records = [
        record("a", host="vm"),
        record("b", host="vm", deleted=True),  # deleted, its domain still defined
        record("c", host="other"),  # lives on another host, defined here too
        record("d", host="vm"),  # active, no domain
        record("e", host="vm", vm_state="building"),  # may rightly have none yet
    ]
    objects = [obj(u) for u in "acde"]
    seen = observation(
        objects=objects,
        records=records,
        audits=[audit("vm", exclusive=False)],
        hosts=("vm",),
        domains={"vm": frozenset({"a", "b", "c", "foreign"})},
    )
    assert counts.duplicate_domains(seen) == {"b", "c"}
    assert counts.missing_domains(seen) == {"d"}


def test_the_audits_missing_domains_of_the_burst_are_counted():
    seen = observation(audits=[audit(in_sync=False, missing=("b", "not-ours"))])
    assert counts.count(seen).missing_domains == 1


def test_an_error_with_a_reason_is_terminal_one_without_is_not_settled():
    failed = observation(objects=[obj("a"), obj("b", "Error", fault_reason="NoValidHost")])
    half = observation(objects=[obj("a"), obj("b", "Error")])
    assert (counts.count(failed).errors, counts.unsettled(failed)) == (1, [])
    assert counts.count(half).not_running == 1
    assert counts.unsettled(half) == ["1 instances neither Running nor failed (Error 1)"]


def test_hosts_down_or_missing_and_audits_out_of_sync_are_unsettled():
    seen = observation(
        audits=[audit(up=False), audit("chaos-002", audited=False)],
        hosts=(HOST, "chaos-002", "chaos-003"),
    )
    assert counts.unsettled(seen) == [
        f"hosts not up: {HOST}, chaos-003",
        "audits with differences: chaos-002 (not audited yet)",
    ]


def test_a_shared_host_is_settled_by_the_bursts_findings_and_its_usage_alone():
    others = audit("vm", exclusive=False, in_sync=False, leftover=("foreign",), unknown=("x",))
    ours = audit("vm", exclusive=False, in_sync=False, missing=("a",))
    usage = audit("vm", exclusive=False, usage_matches=False)
    assert counts.unsettled(observation(audits=[others], hosts=("vm",))) == []
    for finding in (ours, usage):
        assert counts.unsettled(observation(audits=[finding], hosts=("vm",))) == [
            "audits with differences: vm"
        ]


def test_objects_and_hypervisors_are_read_from_their_status():
    instance = counts.InstanceObject.from_object(
        {
            "metadata": {"name": "i", "uid": "u"},
            "status": {"phase": "Error", "taskState": None, "fault": {"reason": "Boom"}},
        }
    )
    hypervisor = counts.HostAudit.from_object(
        {
            "metadata": {"name": HOST},
            "status": {
                "state": "up",
                "audit": {"inSync": False, "leftoverDomains": ["x"], "missingDomains": ["y"]},
            },
        },
        exclusive=True,
    )
    unaudited = counts.HostAudit.from_object({"metadata": {"name": HOST}}, exclusive=False)
    assert instance == counts.InstanceObject("i", "u", "Error", None, "Boom")
    assert (hypervisor.up, hypervisor.in_sync, hypervisor.leftover) == (True, False, {"x"})
    assert (unaudited.up, unaudited.audited) == (False, False)


# -- convergence ----------------------------------------------------------------------------


def zero(instances=2):
    return counts.Counts(instances, 0, 0, 0, 0, 0, instances, 0, 0)


def test_converged_once_a_settled_state_holds_for_the_settle_time():
    settler = converge.Settler(recovered_at=100.0, timeout=300, settle=60)
    settler.feed(110, ["2 instances in a task state"], zero())
    settler.feed(130, [], zero())
    assert not settler.converged(180)
    settler.feed(190, [], zero())
    assert settler.converged(190)
    assert settler.converged_s() == 30.0


def test_changed_counts_or_a_failed_look_start_the_stretch_again():
    settler = converge.Settler(recovered_at=0.0, timeout=300, settle=60)
    settler.feed(10, [], zero())
    settler.feed(40, [], zero(instances=3))
    assert settler.since == 40
    settler.feed(50, ["the look failed"], None)
    settler.feed(60, [], zero(instances=3))
    assert (settler.since, settler.counts) == (60, zero(instances=3))


def test_a_stretch_begun_in_time_may_finish_late_one_begun_late_times_out():
    settler = converge.Settler(recovered_at=0.0, timeout=100, settle=60)
    settler.feed(90, [], zero())
    assert not settler.timed_out(140)
    assert settler.converged(150)
    late = converge.Settler(recovered_at=0.0, timeout=100, settle=60)
    late.feed(50, ["hosts not up: x"], zero())
    assert not late.timed_out(100)
    assert late.timed_out(101)
    late.feed(120, [], zero())
    assert late.timed_out(121)


def test_wait_reports_what_was_left_when_it_gives_up():
    now = [0.0]
    stuck = observation(records=[record("a", task_state="spawning"), record("b")])
    outcome = converge.wait(
        lambda: stuck,
        recovered_at=0.0,
        timeout=10,
        settle=5,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert outcome.converged_s is None
    assert outcome.counts.stuck == 1
    assert outcome.left == ["1 instances in a task state"]


def test_wait_converges_after_a_look_that_failed():
    now = [0.0]
    looks = iter([ConnectionError("refused")])

    def look():
        failure = next(looks, None)
        if failure is not None:
            raise failure
        return observation()

    outcome = converge.wait(
        look, 0.0, 60, 10, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    assert (outcome.converged_s, outcome.left, outcome.counts) == (2.0, [], zero())


# -- the JSON line --------------------------------------------------------------------------


def line(found=None, converged_s=12.3, cleanup=None, error=None):
    outcome = converge.Outcome(found or zero(200), converged_s, [] if converged_s else ["x"])
    return result.line(
        "agent-kill", "simulated", 200, outcome, 4.0, cleanup or result.Cleanup(), error
    )


def test_a_clean_fault_passes_with_the_issues_keys():
    clean = line()
    assert list(clean)[:8] == [
        "fault",
        "guests",
        "instances",
        "lost",
        "duplicate_domains",
        "orphan_claims",
        "stuck",
        "converged_s",
    ]
    assert (clean["converged_s"], clean["not_created"], result.failed(clean)) == (12.3, 0, False)
    assert not result.failed(result.skipped("operator-pod-delete", "no chart"))


@pytest.mark.parametrize(
    "broken",
    [
        {"found": counts.Counts(200, 1, 0, 0, 0, 0, 200, 0, 0)},
        {"found": counts.Counts(200, 0, 1, 0, 0, 0, 200, 0, 0)},
        {"found": counts.Counts(200, 0, 0, 1, 0, 0, 200, 0, 0)},
        {"found": counts.Counts(200, 0, 0, 0, 1, 0, 199, 0, 1)},
        {"found": counts.Counts(200, 0, 0, 0, 0, 1, 200, 0, 0)},
        {"found": counts.Counts(199, 0, 0, 0, 0, 0, 199, 0, 0)},
        {"converged_s": None},
        {"error": "BenchError: MariaDB did not start"},
        {"cleanup": result.Cleanup(deleted=False)},
        {"cleanup": result.Cleanup(claims_left=2)},
        {"cleanup": result.Cleanup(domains_left=1)},
        {"cleanup": result.Cleanup(hosts_not_freed=1)},
    ],
)
def test_any_count_left_a_timeout_an_error_or_a_burst_left_behind_fails(broken):
    assert result.failed(line(**broken))
