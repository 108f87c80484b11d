"""The scheduler's Prometheus metrics count attempts by result, the hosts rejected by reason
when none was found, and the claims refused after the filters passed."""

from __future__ import annotations

import prometheus_client
import pytest

from kubenova.db.api import CLAIMED, ClaimResult
from kubenova.scheduler.filters import compute_filter, resource_filter
from kubenova.scheduler.manager import NoValidHost, SchedulerManager
from tests.unit.scheduler.conftest import NOW, make_host, make_spec

FILTERS = [compute_filter.ComputeFilter(), resource_filter.ResourceFilter()]


def _sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def _scheduler(hosts) -> SchedulerManager:
    return SchedulerManager(lambda: hosts, filters=FILTERS, weighers=[], clock=lambda: NOW)


def test_a_scheduled_attempt_is_timed_under_scheduled():
    before = _sample("kubenova_scheduler_attempt_duration_seconds_count", result="scheduled")
    _scheduler([make_host("a")]).schedule(make_spec(), lambda spec, host: CLAIMED)
    after = _sample("kubenova_scheduler_attempt_duration_seconds_count", result="scheduled")
    assert after - before == 1


def test_an_attempt_without_a_host_counts_its_rejections_and_refusals():
    # "a" and "b" pass the filters and refuse the claim; "c" is full.
    hosts = [make_host("a"), make_host("b"), make_host("c", memory_mib_used=8192)]
    refusals = {"a": ClaimResult("anti-affinity"), "b": ClaimResult("insufficient memory")}
    expected = [
        ("kubenova_scheduler_attempt_duration_seconds_count", {"result": "no_valid_host"}, 1),
        ("kubenova_scheduler_rejected_hosts_total", {"reason": "insufficient memory"}, 2),
        ("kubenova_scheduler_rejected_hosts_total", {"reason": "anti-affinity"}, 1),
        ("kubenova_scheduler_claim_refusals_total", {"reason": "insufficient memory"}, 1),
        ("kubenova_scheduler_claim_refusals_total", {"reason": "anti-affinity"}, 1),
    ]
    before = [_sample(name, **labels) for name, labels, _ in expected]

    with pytest.raises(NoValidHost):
        _scheduler(hosts).schedule(make_spec(), lambda spec, host: refusals[host])

    after = [_sample(name, **labels) for name, labels, _ in expected]
    assert [a - b for a, b in zip(after, before, strict=True)] == [n for *_, n in expected]
