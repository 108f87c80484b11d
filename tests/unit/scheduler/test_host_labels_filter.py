import pytest

from kubenova.scheduler.filters.host_labels_filter import HostLabelsFilter, host_requirement
from tests.unit.scheduler.conftest import make_host, make_spec

LABELS = {"disktype": "ssd", "gpu": "none", "kubernetes.io/arch": "amd64"}


def check(spec, context, labels=LABELS):
    return HostLabelsFilter().host_passes(make_host(labels=dict(labels)), spec, context)


def test_request_without_selector_or_extra_specs_passes_an_unlabelled_host(context):
    assert check(make_spec(), context, labels={}).passed


def test_node_selector_matching_every_label_passes(context):
    spec = make_spec(node_selector={"disktype": "ssd", "kubernetes.io/arch": "amd64"})
    assert check(spec, context).passed


@pytest.mark.parametrize(
    "selector",
    [{"disktype": "hdd"}, {"rack": "r1"}, {"disktype": "ssd", "gpu": "a100"}],
    ids=["different value", "missing label", "one of two differs"],
)
def test_node_selector_with_a_label_missing_or_different_is_rejected(context, selector):
    result = check(make_spec(node_selector=selector), context)
    assert (result.passed, result.reason) == (False, "node selector")


def test_flavor_extra_specs_matching_the_labels_pass(context):
    assert check(make_spec(flavor_extra_specs={"disktype": "ssd"}), context).passed


def test_flavor_extra_spec_with_a_different_value_is_rejected_as_flavor_extra_specs(context):
    result = check(make_spec(flavor_extra_specs={"disktype": "nvme"}), context)
    assert (result.passed, result.reason) == (False, "flavor extra specs")


def test_extra_spec_scoped_to_aggregates_is_matched_without_its_scope(context):
    matching = make_spec(flavor_extra_specs={"aggregate_instance_extra_specs:disktype": "ssd"})
    different = make_spec(flavor_extra_specs={"aggregate_instance_extra_specs:disktype": "hdd"})
    assert check(matching, context).passed
    assert not check(different, context).passed


def test_extra_specs_scoped_for_other_consumers_do_not_constrain_the_host(context):
    spec = make_spec(flavor_extra_specs={"hw:cpu_policy": "dedicated", "quota:cpu_shares": "2"})
    assert check(spec, context).passed


def test_node_selector_is_reported_before_extra_specs_when_both_fail(context):
    spec = make_spec(node_selector={"disktype": "hdd"}, flavor_extra_specs={"gpu": "a100"})
    assert check(spec, context).reason == "node selector"


def test_host_requirement_strips_the_aggregate_scope_and_drops_others():
    assert host_requirement("disktype") == "disktype"
    assert host_requirement("aggregate_instance_extra_specs:disktype") == "disktype"
    assert host_requirement("hw:mem_page_size") is None
