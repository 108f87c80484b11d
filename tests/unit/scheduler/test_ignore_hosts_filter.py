from kubenova.scheduler.filters.ignore_hosts_filter import IgnoreHostsFilter
from tests.unit.scheduler.conftest import make_host, make_spec


def test_host_a_previous_attempt_failed_on_is_rejected_as_already_tried(context):
    spec = make_spec(ignore_hosts=frozenset({"h1", "h2"}))
    result = IgnoreHostsFilter().host_passes(make_host("h2"), spec, context)
    assert (result.passed, result.reason) == (False, "already tried")


def test_host_not_yet_tried_passes(context):
    spec = make_spec(ignore_hosts=frozenset({"h1"}))
    assert IgnoreHostsFilter().host_passes(make_host("h3"), spec, context).passed


def test_first_attempt_ignores_no_host(context):
    assert IgnoreHostsFilter().host_passes(make_host("h1"), make_spec(), context).passed
