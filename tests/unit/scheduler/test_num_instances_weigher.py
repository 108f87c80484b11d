from kubenova.scheduler.weighers.num_instances_weigher import NumInstancesWeigher
from tests.unit.scheduler.conftest import make_host, make_spec, ranked

# Each test names its hosts so that the order by name (the tie-break) differs from the
# order the weigher must produce.


def test_default_multiplier_is_novas_zero_so_the_weigher_is_off():
    hosts = [make_host("b-few", num_instances=1), make_host("a-many", num_instances=9)]
    assert NumInstancesWeigher().multiplier == 0.0
    # Off: the order is by host name although the counts differ.
    assert ranked(NumInstancesWeigher(), hosts) == ["a-many", "b-few"]


def test_positive_multiplier_spreads_to_the_host_with_fewer_instances():
    hosts = [make_host("a-many", num_instances=9), make_host("b-few", num_instances=1)]
    assert ranked(NumInstancesWeigher(1.0), hosts) == ["b-few", "a-many"]


def test_negative_multiplier_packs_onto_the_host_with_more_instances():
    hosts = [make_host("a-few", num_instances=1), make_host("b-many", num_instances=9)]
    assert ranked(NumInstancesWeigher(-1.0), hosts) == ["b-many", "a-few"]


def test_raw_weight_is_minus_the_instance_count():
    assert NumInstancesWeigher().weigh(make_host(num_instances=4), make_spec()) == -4.0
