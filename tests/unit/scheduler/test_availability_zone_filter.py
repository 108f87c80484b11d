from kubenova.scheduler.filters.availability_zone_filter import AvailabilityZoneFilter
from tests.unit.scheduler.conftest import make_host, make_spec

ZONE = "topology.kubernetes.io/zone"


def test_request_without_a_zone_passes_a_host_in_any_zone(context):
    host = make_host(labels={ZONE: "az1"})
    assert AvailabilityZoneFilter().host_passes(host, make_spec(), context).passed


def test_host_in_the_requested_zone_passes(context):
    host = make_host(labels={ZONE: "az1"})
    spec = make_spec(availability_zone="az1")
    assert AvailabilityZoneFilter().host_passes(host, spec, context).passed


def test_host_in_another_zone_is_rejected_as_availability_zone(context):
    host = make_host(labels={ZONE: "az2"})
    result = AvailabilityZoneFilter().host_passes(host, make_spec(availability_zone="az1"), context)
    assert (result.passed, result.reason) == (False, "availability zone")


def test_host_without_a_zone_label_is_in_the_default_zone_nova(context):
    unlabelled = make_host(labels={})
    assert (
        AvailabilityZoneFilter()
        .host_passes(unlabelled, make_spec(availability_zone="nova"), context)
        .passed
    )
    assert (
        not AvailabilityZoneFilter()
        .host_passes(unlabelled, make_spec(availability_zone="az1"), context)
        .passed
    )


def test_zone_names_compare_exactly(context):
    host = make_host(labels={ZONE: "AZ1"})
    spec = make_spec(availability_zone="az1")
    assert not AvailabilityZoneFilter().host_passes(host, spec, context).passed
