import pytest

from kubenova.scheduler.filters.resource_filter import ResourceFilter
from tests.unit.scheduler.conftest import make_host, make_spec


def test_host_with_room_passes(context):
    assert ResourceFilter().host_passes(make_host(), make_spec(), context).passed


@pytest.mark.parametrize(
    ("host_overrides", "spec", "reason"),
    [
        ({"memory_mib_used": 7800}, make_spec(memory_mib=512), "insufficient memory"),
        ({"reserved_host_memory_mib": 7800}, make_spec(memory_mib=512), "insufficient memory"),
        ({"vcpus_used": 16}, make_spec(vcpus=1), "insufficient vcpu"),
        ({"disk_gib_used": 100}, make_spec(disk_gib=1), "insufficient disk"),
    ],
)
def test_host_without_room_is_rejected_with_the_resource_named(
    context, host_overrides, spec, reason
):
    result = ResourceFilter().host_passes(make_host(**host_overrides), spec, context)
    assert (result.passed, result.reason) == (False, reason)


def test_cpu_allocation_ratio_lets_vcpus_overcommit_up_to_the_ratio(context):
    host = make_host(vcpus=2, vcpus_used=7, cpu_allocation_ratio=4.0)
    assert ResourceFilter().host_passes(host, make_spec(vcpus=1), context).passed
    full = make_host(vcpus=2, vcpus_used=8, cpu_allocation_ratio=4.0)
    assert not ResourceFilter().host_passes(full, make_spec(vcpus=1), context).passed
