from unittest import mock

import pytest

from kubenova.scheduler import host_state
from kubenova.scheduler.host_state import RequestSpec, ServerGroupSpec
from tests.unit.scheduler.conftest import make_host


def test_request_spec_keeps_working_with_only_the_resources():
    spec = RequestSpec("uuid", 1, 512, 1)
    assert spec.availability_zone is None
    assert dict(spec.node_selector) == {}
    assert dict(spec.flavor_extra_specs) == {}
    assert spec.image_architecture is None
    assert spec.image_hypervisor_type is None
    assert spec.server_group is None
    assert spec.forced_host is None
    assert spec.ignore_hosts == frozenset()


def test_availability_zone_is_the_zone_label_or_nova():
    assert make_host(labels={"topology.kubernetes.io/zone": "az1"}).availability_zone == "az1"
    assert make_host(labels={"rack": "r1"}).availability_zone == "nova"


def test_server_group_refuses_an_unknown_policy():
    with pytest.raises(ValueError, match="unknown policy 'affinty'"):
        ServerGroupSpec(name="g", policy="affinty")  # type: ignore[arg-type]


def test_server_group_refuses_a_max_server_per_host_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        ServerGroupSpec(name="g", policy="anti-affinity", max_server_per_host=0)


def test_server_group_occupied_hosts_leave_out_hosts_with_no_members():
    group = ServerGroupSpec(name="g", policy="affinity", member_hosts={"h1": 2, "h2": 0})
    assert group.occupied_hosts == frozenset({"h1"})
    assert (group.members_on("h1"), group.members_on("h2"), group.members_on("h3")) == (2, 0, 0)


def _node(**extra):
    values = {
        "host": "h1",
        "vcpus": 8,
        "vcpus_used": 2,
        "memory_mib": 16384,
        "memory_mib_used": 1024,
        "local_gb": 200,
        "local_gb_used": 20,
        "cpu_allocation_ratio": 4.0,
        "ram_allocation_ratio": 1.0,
        "disk_allocation_ratio": 1.0,
        "reserved_host_memory_mib": 512,
        "reserved_host_disk_gib": 0,
        "node_disabled": False,
        "disabled_reason": None,
        "running_vms": 3,
        "labels": {"topology.kubernetes.io/zone": "az1"},
        "cpu_arch": "x86_64",
        "hypervisor_type": "QEMU",
        "virt_type": "kvm",
        "failed_builds": 0,
        "service_disabled": False,
        "last_seen_up": None,
    }
    values.update(extra)
    return host_state.db_api.HostCapacity(**values)


def _load(monkeypatch, node):
    monkeypatch.setattr(host_state.db_api, "compute_node_capacities", lambda session: [node])
    # A session factory whose sessions and transactions are no-op context managers.
    return host_state.load_host_states(mock.MagicMock())


def test_load_host_states_reads_the_hosts_facts(monkeypatch):
    [state] = _load(monkeypatch, _node())
    assert (state.cpu_arch, state.hypervisor_type, state.virt_type) == ("x86_64", "QEMU", "kvm")
    assert state.availability_zone == "az1"
    assert (state.num_instances, state.disk_gib, state.disk_gib_used) == (3, 200, 20)
    assert state.disabled is False


def test_load_host_states_reads_failed_builds(monkeypatch):
    [state] = _load(monkeypatch, _node(failed_builds=4))
    assert state.failed_builds == 4


def test_load_host_states_disables_a_host_whose_node_or_service_is_disabled(monkeypatch):
    [by_node] = _load(monkeypatch, _node(node_disabled=True))
    [by_service] = _load(monkeypatch, _node(service_disabled=True))
    [no_service] = _load(monkeypatch, _node(service_disabled=None))
    assert (by_node.disabled, by_service.disabled, no_service.disabled) == (True, True, False)
