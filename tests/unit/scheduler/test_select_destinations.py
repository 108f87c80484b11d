import datetime

import pytest

from kubenova.db.api import CLAIMED, ClaimResult
from kubenova.scheduler.filters import (
    DEFAULT_FILTERS,
    compute_filter,
    load_filters,
    resource_filter,
)
from kubenova.scheduler.manager import NoValidHost, SchedulerManager, select_destinations
from kubenova.scheduler.weighers import load_weighers
from kubenova.scheduler.weighers.ram_weigher import RAMWeigher
from tests.unit.scheduler.conftest import NOW, UUID, group_spec, make_host, make_spec

FILTERS = [compute_filter.ComputeFilter(), resource_filter.ResourceFilter()]
ALL_FILTERS = load_filters(DEFAULT_FILTERS)
ZONE = "topology.kubernetes.io/zone"
DOWN = NOW - datetime.timedelta(minutes=5)


def test_hosts_are_ordered_by_free_memory_when_spreading(context):
    hosts = [
        make_host("small", memory_mib_used=6000),
        make_host("big"),
        make_host("mid", memory_mib_used=3000),
    ]
    ordered = select_destinations(make_spec(), hosts, FILTERS, [RAMWeigher(1.0)], context)
    assert [h.host for h in ordered] == ["big", "mid", "small"]


def test_negative_ram_multiplier_packs(context):
    hosts = [make_host("empty"), make_host("busy", memory_mib_used=6000)]
    ordered = select_destinations(make_spec(), hosts, FILTERS, [RAMWeigher(-1.0)], context)
    assert [h.host for h in ordered] == ["busy", "empty"]


def test_no_valid_host_counts_each_rejection_reason(context):
    hosts = [
        make_host("a", memory_mib_used=8000),
        make_host("b", memory_mib_used=8000),
        make_host("c", last_seen_up=NOW - datetime.timedelta(minutes=5)),
    ]
    with pytest.raises(NoValidHost) as raised:
        select_destinations(make_spec(memory_mib=512), hosts, FILTERS, [], context)
    assert str(raised.value) == "0/3 hosts: 2 insufficient memory, 1 down"
    assert raised.value.rejections == {"insufficient memory": 2, "down": 1}


def test_no_hosts_at_all_says_none_registered(context):
    with pytest.raises(NoValidHost, match="no hypervisor has registered"):
        select_destinations(make_spec(), [], FILTERS, [], context)


def _scheduler(hosts, **kwargs) -> SchedulerManager:
    return SchedulerManager(
        lambda: hosts, filters=FILTERS, weighers=[RAMWeigher()], clock=lambda: NOW, **kwargs
    )


def test_schedule_claims_on_the_best_host_and_returns_it():
    hosts = [make_host("second", memory_mib_used=100), make_host("first")]
    claims = []

    def claim(spec, host):
        claims.append(host)
        return CLAIMED

    assert _scheduler(hosts).schedule(make_spec(), claim) == "first"
    assert claims == ["first"]


def test_schedule_tries_the_next_host_when_a_claim_loses_a_race():
    hosts = [
        make_host("first"),
        make_host("second", memory_mib_used=100),
        make_host("third", memory_mib_used=200),
    ]
    claims = []

    def claim(spec, host):
        claims.append(host)
        # Someone else just filled "first".
        return ClaimResult("insufficient memory") if host == "first" else CLAIMED

    assert _scheduler(hosts).schedule(make_spec(), claim) == "second"
    assert claims == ["first", "second"]


def test_schedule_claims_only_hosts_that_pass_the_filters():
    hosts = [make_host("full", memory_mib_used=8192), make_host("down", last_seen_up=DOWN)]
    claims = []

    with pytest.raises(NoValidHost) as raised:
        _scheduler(hosts).schedule(make_spec(), lambda spec, host: claims.append(host))

    assert claims == []
    assert str(raised.value) == "0/2 hosts: 1 insufficient memory, 1 down"


def test_schedule_tells_the_host_view_of_each_claim_and_of_each_refusal():
    hosts = [make_host("first"), make_host("second", memory_mib_used=100)]
    claimed, refused = [], []
    scheduler = _scheduler(
        hosts,
        on_claimed=lambda spec, host: claimed.append((spec.instance_uuid, host)),
        on_refused=lambda: refused.append(True),
    )

    scheduler.schedule(
        make_spec(), lambda spec, host: ClaimResult("disabled") if host == "first" else CLAIMED
    )

    assert claimed == [(UUID, "second")]
    assert refused == [True]


def test_refused_claims_are_counted_with_the_filters_rejections():
    # Two hosts pass the filters with the view the scheduler read; by the time of the claim
    # a group member took one and another claim the other's memory.
    hosts = [make_host("a"), make_host("b"), make_host("c", memory_mib_used=8192)]
    refusals = {"a": ClaimResult("anti-affinity"), "b": ClaimResult("insufficient memory")}
    with pytest.raises(NoValidHost) as raised:
        _scheduler(hosts).schedule(make_spec(memory_mib=512), lambda spec, host: refusals[host])
    assert str(raised.value) == "0/3 hosts: 2 insufficient memory, 1 anti-affinity"
    assert raised.value.rejections == {"insufficient memory": 2, "anti-affinity": 1}


def test_a_host_the_build_already_failed_on_is_never_claimed():
    hosts = [make_host("tried"), make_host("other", memory_mib_used=4096)]
    claims = []

    def claim(spec, host):
        claims.append(host)
        return CLAIMED

    scheduler = SchedulerManager(
        lambda: hosts, filters=ALL_FILTERS, weighers=load_weighers(), clock=lambda: NOW
    )
    host = scheduler.schedule(make_spec(ignore_hosts=frozenset({"tried"})), claim)

    assert (host, claims) == ("other", ["other"])


def test_forced_host_is_chosen_over_filters_an_administrator_may_override(context):
    hosts = [
        make_host("free"),
        make_host("forced", labels={ZONE: "az2"}, memory_mib_used=6000),
    ]
    spec = group_spec(
        "anti-affinity",
        member_hosts={"forced": 1},
        availability_zone="az1",
        node_selector={"disktype": "ssd"},
        image_architecture="aarch64",
        forced_host="forced",
    )
    ordered = select_destinations(spec, hosts, ALL_FILTERS, load_weighers(), context)
    assert [h.host for h in ordered] == ["forced"]


@pytest.mark.parametrize(
    ("forced_overrides", "spec_overrides", "reason"),
    [
        ({"last_seen_up": DOWN}, {}, "down"),
        ({"disabled": True}, {}, "disabled"),
        ({"memory_mib_used": 8000}, {}, "insufficient memory"),
        ({}, {"ignore_hosts": frozenset({"forced"})}, "already tried"),
    ],
    ids=["down", "disabled", "full", "already tried"],
)
def test_forced_host_is_still_checked_for_liveness_room_and_retries(
    context, forced_overrides, spec_overrides, reason
):
    hosts = [make_host("other1"), make_host("forced", **forced_overrides), make_host("other2")]
    spec = make_spec(forced_host="forced", **spec_overrides)
    with pytest.raises(NoValidHost) as raised:
        select_destinations(spec, hosts, ALL_FILTERS, load_weighers(), context)
    assert str(raised.value) == f"0/3 hosts: 2 not the forced host, 1 {reason}"


def test_forced_host_that_is_not_a_compute_node_rejects_every_host(context):
    spec = make_spec(forced_host="nowhere")
    with pytest.raises(NoValidHost) as raised:
        select_destinations(spec, [make_host("a"), make_host("b")], ALL_FILTERS, [], context)
    assert str(raised.value) == "0/2 hosts: 2 not the forced host"


def test_rejection_message_counts_each_reason_across_filters_largest_first(context):
    hosts = (
        [make_host(f"full{i:02}", memory_mib_used=8000) for i in range(62)]
        + [make_host(f"member{i:02}") for i in range(30)]
        # Down and full: counted once, under the first filter that rejects it.
        + [make_host(f"down{i}", last_seen_up=DOWN, memory_mib_used=8000) for i in range(8)]
    )
    spec = group_spec("anti-affinity", member_hosts={f"member{i:02}": 1 for i in range(30)})
    with pytest.raises(NoValidHost) as raised:
        select_destinations(spec, hosts, ALL_FILTERS, load_weighers(), context)
    assert str(raised.value) == "0/100 hosts: 62 insufficient memory, 30 anti-affinity, 8 down"
    assert sum(raised.value.rejections.values()) == 100


def test_every_filter_reason_shows_up_in_one_message(context):
    hosts = [
        make_host("a", disabled=True),
        make_host("b"),
        make_host("c", labels={ZONE: "az2"}),
        make_host("d", vcpus_used=16, labels={ZONE: "az1"}),
        make_host("e", labels={ZONE: "az1"}),
        make_host("f", labels={ZONE: "az1", "disktype": "ssd"}, cpu_arch="aarch64"),
        make_host("g", labels={ZONE: "az1", "disktype": "ssd"}, cpu_arch="x86_64"),
        make_host("h", labels={ZONE: "az1", "disktype": "ssd"}, cpu_arch="x86_64"),
    ]
    spec = group_spec(
        "anti-affinity",
        member_hosts={"g": 1, "h": 1},
        availability_zone="az1",
        node_selector={"disktype": "ssd"},
        image_architecture="x86_64",
        ignore_hosts=frozenset({"b"}),
    )
    with pytest.raises(NoValidHost) as raised:
        select_destinations(spec, hosts, ALL_FILTERS, [], context)
    assert raised.value.rejections == {
        "disabled": 1,
        "already tried": 1,
        "availability zone": 1,
        "insufficient vcpu": 1,
        "node selector": 1,
        "image properties": 1,
        "anti-affinity": 2,
    }
    assert str(raised.value).startswith("0/8 hosts: 2 anti-affinity, 1 disabled, 1 already tried")


def test_default_pipeline_places_on_the_one_host_that_meets_every_constraint(context):
    good = {"labels": {ZONE: "az1", "disktype": "ssd"}, "cpu_arch": "x86_64"}
    hosts = [
        make_host("busy-fit", memory_mib_used=4000, **good),
        make_host("idle-fit", **good),
        make_host("failing-fit", failed_builds=2, **good),
        make_host("member", **good),
        make_host("other-zone", labels={ZONE: "az2", "disktype": "ssd"}, cpu_arch="x86_64"),
    ]
    spec = group_spec(
        "anti-affinity",
        member_hosts={"member": 1},
        availability_zone="az1",
        node_selector={"disktype": "ssd"},
        image_architecture="x86_64",
    )
    ordered = select_destinations(spec, hosts, ALL_FILTERS, load_weighers(), context)
    assert [h.host for h in ordered] == ["idle-fit", "busy-fit", "failing-fit"]
