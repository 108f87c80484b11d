import datetime

from kubenova.scheduler.filters.compute_filter import ComputeFilter
from tests.unit.scheduler.conftest import NOW, make_host, make_spec


def test_host_with_a_recent_heartbeat_passes(context):
    assert ComputeFilter().host_passes(make_host(), make_spec(), context).passed


def test_host_silent_for_longer_than_service_down_time_is_down(context):
    host = make_host(last_seen_up=NOW - datetime.timedelta(seconds=61))
    result = ComputeFilter().host_passes(host, make_spec(), context)
    assert (result.passed, result.reason) == (False, "down")


def test_host_that_never_reported_is_down(context):
    result = ComputeFilter().host_passes(make_host(last_seen_up=None), make_spec(), context)
    assert (result.passed, result.reason) == (False, "down")


def test_disabled_host_is_rejected_as_disabled(context):
    host = make_host(disabled=True, disabled_reason="maintenance")
    result = ComputeFilter().host_passes(host, make_spec(), context)
    assert (result.passed, result.reason) == (False, "disabled")
