from kubenova.scheduler.filters import FilterContext
from kubenova.scheduler.manager import select_destinations
from kubenova.scheduler.weighers.build_failure_weigher import BuildFailureWeigher
from kubenova.scheduler.weighers.ram_weigher import RAMWeigher
from tests.unit.scheduler.conftest import NOW, make_host, make_spec


def test_raw_weight_is_minus_the_recent_build_failures():
    assert BuildFailureWeigher().weigh(make_host(failed_builds=3), make_spec()) == -3.0


def test_default_multiplier_is_novas_million():
    assert BuildFailureWeigher().multiplier == 1000000.0


def test_a_host_with_failures_loses_to_one_without_even_with_far_more_free_memory():
    hosts = [
        make_host("failing-but-empty", failed_builds=1),
        make_host("healthy-but-busy", memory_mib_used=8000),
    ]
    ordered = select_destinations(
        make_spec(memory_mib=64),
        hosts,
        [],
        [RAMWeigher(), BuildFailureWeigher()],
        FilterContext(now=NOW),
    )
    assert [host.host for host in ordered] == ["healthy-but-busy", "failing-but-empty"]
