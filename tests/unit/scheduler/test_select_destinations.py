import datetime

import pytest

from kubenova.scheduler.filters import compute_filter, resource_filter
from kubenova.scheduler.manager import NoValidHost, SchedulerManager, select_destinations
from kubenova.scheduler.weighers.ram_weigher import RAMWeigher
from tests.unit.scheduler.conftest import NOW, make_host, make_spec

FILTERS = [compute_filter.ComputeFilter(), resource_filter.ResourceFilter()]


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


def test_schedule_claims_the_best_host_and_falls_back_when_a_claim_loses_a_race():
    hosts = [
        make_host("first"),
        make_host("second", memory_mib_used=100),
        make_host("third", memory_mib_used=200),
    ]
    claims = []

    def claim(uuid, host, vcpus, memory, disk):
        claims.append(host)
        return host != "first"  # someone else just filled "first"

    scheduler = SchedulerManager(
        lambda: hosts, claim, filters=FILTERS, weighers=[RAMWeigher()], clock=lambda: NOW
    )
    selection = scheduler.schedule(make_spec())
    assert claims == ["first", "second"]
    assert selection.host == "second"
    assert selection.alternates == ("third",)


def test_schedule_raises_no_valid_host_when_every_claim_is_refused():
    scheduler = SchedulerManager(
        lambda: [make_host("only")],
        lambda *args: False,
        filters=FILTERS,
        weighers=[],
        clock=lambda: NOW,
    )
    with pytest.raises(NoValidHost, match="lost a race"):
        scheduler.schedule(make_spec())
