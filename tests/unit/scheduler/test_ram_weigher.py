from kubenova.scheduler.weighers.ram_weigher import RAMWeigher
from tests.unit.scheduler.conftest import make_host, make_spec, ranked


def test_raw_weight_is_free_memory_after_reservation_and_claims():
    host = make_host(memory_mib=8192, reserved_host_memory_mib=1024, memory_mib_used=2048)
    assert RAMWeigher().weigh(host, make_spec()) == 8192 - 1024 - 2048


def test_default_multiplier_is_novas_and_spreads_to_the_most_free_memory():
    hosts = [make_host("busy", memory_mib_used=6000), make_host("empty")]
    assert RAMWeigher().multiplier == 1.0
    assert ranked(RAMWeigher(), hosts) == ["empty", "busy"]


def test_negative_multiplier_packs_onto_the_least_free_memory():
    # Named so that the order by name (the tie-break) is the opposite of the expected one.
    hosts = [make_host("a-empty"), make_host("b-busy", memory_mib_used=6000)]
    assert ranked(RAMWeigher(-1.0), hosts) == ["b-busy", "a-empty"]
