"""Power states and their mapping from libvirt's domain states."""

from __future__ import annotations

import pytest

from kubenova_agent.virt import power_state
from kubenova_agent.virt.power_state import LibvirtDomainState, PowerState


def test_power_states_are_nova_strings():
    assert [state.value for state in PowerState] == [
        "running",
        "shutdown",
        "paused",
        "crashed",
        "nostate",
    ]


@pytest.mark.parametrize(
    ("libvirt_state", "expected"),
    [
        (LibvirtDomainState.NOSTATE, PowerState.NOSTATE),
        (LibvirtDomainState.RUNNING, PowerState.RUNNING),
        (LibvirtDomainState.BLOCKED, PowerState.RUNNING),
        (LibvirtDomainState.PAUSED, PowerState.PAUSED),
        (LibvirtDomainState.SHUTDOWN, PowerState.SHUTDOWN),
        (LibvirtDomainState.SHUTOFF, PowerState.SHUTDOWN),
        (LibvirtDomainState.CRASHED, PowerState.CRASHED),
        (LibvirtDomainState.PMSUSPENDED, PowerState.PAUSED),
    ],
)
def test_libvirt_states_map_as_nova_maps_them(libvirt_state, expected):
    assert power_state.from_libvirt(libvirt_state) is expected


def test_a_state_newer_than_this_code_is_nostate():
    assert power_state.from_libvirt(99) is PowerState.NOSTATE


def test_state_numbers_match_the_libvirt_binding():
    libvirt = pytest.importorskip("libvirt")
    for state in LibvirtDomainState:
        assert getattr(libvirt, f"VIR_DOMAIN_{state.name}") == state.value
