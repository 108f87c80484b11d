"""How often a heartbeat that changes nothing refreshes a Hypervisor's status: every 30 s on a
small fleet, and on a larger one as often as keeps the fleet's refreshes near 10 writes a
second."""

from __future__ import annotations

import pytest

from kubenova.conductor import hypervisors


@pytest.mark.parametrize(
    ("hosts", "interval_s"),
    [(0, 30.0), (1, 30.0), (300, 30.0), (301, 30.1), (1000, 100.0), (5000, 500.0)],
)
def test_the_refresh_interval_grows_with_the_fleet_past_its_budget(
    hosts: int, interval_s: float
) -> None:
    assert hypervisors.heartbeat_status_interval_s(hosts) == pytest.approx(interval_s)


def test_the_fleet_refreshes_within_the_budget_at_any_size() -> None:
    for hosts in (10, 300, 1000, 10_000):
        writes_per_s = hosts / hypervisors.heartbeat_status_interval_s(hosts)
        assert writes_per_s <= hypervisors.HEARTBEAT_STATUS_WRITES_PER_S
