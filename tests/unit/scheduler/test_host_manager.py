import datetime
from unittest import mock

from kubenova.config import OperatorSettings
from kubenova.db.api import CLAIMED, ClaimResult
from kubenova.scheduler import host_manager
from kubenova.scheduler.host_manager import HostManager
from kubenova.scheduler.manager import SchedulerManager
from tests.support import FakeClock
from tests.unit.scheduler.conftest import make_host, make_spec


class Loader:
    def __init__(self, **overrides):
        self.calls = 0
        self.overrides = overrides

    def __call__(self):
        self.calls += 1
        return [make_host("h1", **self.overrides), make_host("h2", **self.overrides)]


def test_view_is_loaded_once_per_refresh_interval():
    loader, clock = Loader(), FakeClock()
    manager = HostManager(loader, refresh_s=1.0, clock=clock)
    manager.host_states()
    clock.advance(0.5)
    manager.host_states()
    assert loader.calls == 1
    clock.advance(0.6)
    manager.host_states()
    assert loader.calls == 2


def test_claim_is_subtracted_from_the_cached_view_until_the_next_reload():
    loader, clock = Loader(), FakeClock()
    manager = HostManager(loader, refresh_s=1.0, clock=clock)
    manager.host_states()
    manager.consume(make_spec(vcpus=2, memory_mib=1024, disk_gib=5), "h1")
    h1 = next(h for h in manager.host_states() if h.host == "h1")
    assert (h1.vcpus_used, h1.memory_mib_used, h1.disk_gib_used, h1.num_instances) == (
        2,
        1024,
        5,
        1,
    )
    clock.advance(1.0)
    h1 = next(h for h in manager.host_states() if h.host == "h1")
    assert h1.memory_mib_used == 0  # the database's view wins at the reload


def test_refused_claim_forces_a_reload():
    loader, clock = Loader(), FakeClock()
    manager = HostManager(loader, refresh_s=60.0, clock=clock)
    manager.host_states()
    manager.mark_stale()
    manager.host_states()
    assert loader.calls == 2


def _up_hosts() -> Loader:
    """Hosts whose heartbeat the scheduler's clock (the real one) finds fresh."""
    return Loader(last_seen_up=datetime.datetime.now(datetime.UTC))


def test_a_scheduler_from_settings_subtracts_its_claims_from_the_view():
    loader, clock = _up_hosts(), FakeClock()
    manager = HostManager(loader, refresh_s=60.0, clock=clock)
    scheduler = SchedulerManager.from_settings(OperatorSettings(), manager)

    host = scheduler.schedule(make_spec(memory_mib=1024), lambda spec, host: CLAIMED)

    claimed = next(h for h in manager.host_states() if h.host == host)
    assert (claimed.memory_mib_used, claimed.num_instances) == (1024, 1)
    assert loader.calls == 1


def test_a_scheduler_from_settings_reads_the_view_again_after_a_refused_claim():
    loader, clock = _up_hosts(), FakeClock()
    manager = HostManager(loader, refresh_s=60.0, clock=clock)
    scheduler = SchedulerManager.from_settings(OperatorSettings(), manager)
    outcomes = iter([ClaimResult("insufficient memory"), CLAIMED])

    scheduler.schedule(make_spec(), lambda spec, host: next(outcomes))
    manager.host_states()

    assert loader.calls == 2


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
    return host_manager.db_api.HostCapacity(**values)


def _load(monkeypatch, node):
    monkeypatch.setattr(host_manager.db_api, "compute_node_capacities", lambda session: [node])
    # A session factory whose sessions and transactions are no-op context managers.
    return host_manager.load_host_states(mock.MagicMock())


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


class _Rows:
    """compute_node_capacities answering with the rows it is given, as a database would."""

    def __init__(self, monkeypatch, *rows):
        self.rows = list(rows)
        monkeypatch.setattr(host_manager.db_api, "compute_node_capacities", lambda s: self.rows)


def test_database_hosts_build_a_host_state_only_for_a_changed_row(monkeypatch):
    rows = _Rows(monkeypatch, _node(host="h1"), _node(host="h2"))
    reader = host_manager.DatabaseHosts(mock.MagicMock())
    first = {state.host: state for state in reader.all()}

    rows.rows = [_node(host="h1"), _node(host="h2", vcpus_used=3)]
    second = {state.host: state for state in reader.all()}

    assert second["h1"] is first["h1"]
    assert second["h2"] is not first["h2"]
    assert (first["h2"].vcpus_used, second["h2"].vcpus_used) == (2, 3)


def test_database_hosts_forget_a_host_whose_row_is_gone(monkeypatch):
    rows = _Rows(monkeypatch, _node(host="h1"), _node(host="h2"))
    reader = host_manager.DatabaseHosts(mock.MagicMock())
    reader.all()

    rows.rows = [_node(host="h2")]
    assert [state.host for state in reader.all()] == ["h2"]
    rows.rows = [_node(host="h1"), _node(host="h2")]
    assert [state.host for state in reader.all()] == ["h1", "h2"]
