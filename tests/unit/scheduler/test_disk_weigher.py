from kubenova.scheduler.weighers.disk_weigher import DiskWeigher
from tests.unit.scheduler.conftest import make_host, make_spec, ranked


def test_raw_weight_is_free_disk_after_reservation_and_claims():
    host = make_host(disk_gib=100, reserved_host_disk_gib=10, disk_gib_used=30)
    assert DiskWeigher().weigh(host, make_spec()) == 100 - 10 - 30


def test_default_multiplier_is_novas_and_spreads_to_the_most_free_disk():
    # Named so that the order by name (the tie-break) is the opposite of the expected one.
    hosts = [make_host("a-full", disk_gib_used=90), make_host("b-empty")]
    assert DiskWeigher().multiplier == 1.0
    assert ranked(DiskWeigher(), hosts) == ["b-empty", "a-full"]


def test_negative_multiplier_packs_onto_the_least_free_disk():
    hosts = [make_host("empty"), make_host("full", disk_gib_used=90)]
    assert ranked(DiskWeigher(-1.0), hosts) == ["full", "empty"]
