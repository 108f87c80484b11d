from kubenova.scheduler.host_manager import HostManager
from tests.support import FakeClock
from tests.unit.scheduler.conftest import make_host, make_spec


class Loader:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return [make_host("h1"), make_host("h2")]


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
