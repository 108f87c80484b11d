import pytest

from kubenova.scheduler import filters, weighers


def test_default_filters_load_in_the_documented_order():
    loaded = filters.load_filters(filters.DEFAULT_FILTERS)
    assert [f.name for f in loaded] == [
        "ComputeFilter",
        "IgnoreHostsFilter",
        "AvailabilityZoneFilter",
        "ResourceFilter",
        "HostLabelsFilter",
        "ImagePropertiesFilter",
        "ServerGroupAntiAffinityFilter",
        "ServerGroupAffinityFilter",
    ]


def test_only_liveness_room_and_retries_run_on_a_forced_host():
    forced = {f.name for f in filters.load_filters(filters.DEFAULT_FILTERS) if f.RUN_ON_FORCED_HOST}
    assert forced == {"ComputeFilter", "ResourceFilter", "IgnoreHostsFilter"}


def test_unknown_filter_is_refused_with_its_name():
    with pytest.raises(ValueError, match="RamFilter"):
        filters.load_filters(("ComputeFilter", "RamFilter"))


def test_default_weighers_load_with_novas_multipliers():
    loaded = weighers.load_weighers(weighers.DEFAULT_WEIGHERS, {})
    assert {w.name: w.multiplier for w in loaded} == {
        "RAMWeigher": 1.0,
        "CPUWeigher": 1.0,
        "DiskWeigher": 1.0,
        "ServerGroupSoftAffinityWeigher": 1.0,
        "ServerGroupSoftAntiAffinityWeigher": 1.0,
        "BuildFailureWeigher": 1000000.0,
        "NumInstancesWeigher": 0.0,
    }
    assert dict(weighers.DEFAULT_MULTIPLIERS) == {w.name: w.multiplier for w in loaded}


def test_any_subset_of_weighers_loads_in_the_given_order_with_given_multipliers():
    loaded = weighers.load_weighers(
        ("NumInstancesWeigher", "RAMWeigher"),
        {"NumInstancesWeigher": 2.0, "BuildFailureWeigher": 5.0},
    )
    assert [(w.name, w.multiplier) for w in loaded] == [
        ("NumInstancesWeigher", 2.0),
        ("RAMWeigher", 1.0),
    ]


def test_unknown_weigher_or_multiplier_name_is_refused():
    with pytest.raises(ValueError, match="RamWeigher"):
        weighers.load_weighers(("RamWeigher",), {})
    with pytest.raises(ValueError, match="CpuWeigher"):
        weighers.load_weighers(("RAMWeigher",), {"CpuWeigher": 1.0})
