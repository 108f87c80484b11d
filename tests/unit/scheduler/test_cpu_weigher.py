from kubenova.scheduler.weighers.cpu_weigher import CPUWeigher
from tests.unit.scheduler.conftest import make_host, make_spec, ranked


def test_raw_weight_is_free_vcpus_after_the_allocation_ratio():
    host = make_host(vcpus=4, cpu_allocation_ratio=2.0, vcpus_used=3)
    assert CPUWeigher().weigh(host, make_spec()) == 4 * 2.0 - 3


def test_default_multiplier_is_novas_and_spreads_to_the_most_free_vcpus():
    hosts = [make_host("busy", vcpus_used=10), make_host("idle")]
    assert CPUWeigher().multiplier == 1.0
    assert ranked(CPUWeigher(), hosts) == ["idle", "busy"]


def test_negative_multiplier_packs_onto_the_fewest_free_vcpus():
    # Named so that the order by name (the tie-break) is the opposite of the expected one.
    hosts = [make_host("a-idle"), make_host("b-busy", vcpus_used=10)]
    assert ranked(CPUWeigher(-1.0), hosts) == ["b-busy", "a-idle"]
