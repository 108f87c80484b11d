"""Power states of an instance, as Nova reports them, and how libvirt's domain states map to them.

The power state is what the hypervisor says the VM is doing right now; it is one of the three
states (vm_state, task_state, power_state) the control plane keeps. Values are strings so that
they travel unchanged in messages and in the Instance status.
"""

from __future__ import annotations

import enum


class PowerState(enum.StrEnum):
    """What the hypervisor reports about a VM."""

    RUNNING = "running"
    SHUTDOWN = "shutdown"
    PAUSED = "paused"
    CRASHED = "crashed"
    NOSTATE = "nostate"


class LibvirtDomainState(enum.IntEnum):
    """libvirt's ``virDomainState`` values.

    They are part of libvirt's stable ABI, so they are spelled out here rather than read from the
    binding: only the hypervisor adapter module may import ``libvirt``. A unit test checks them
    against the binding.
    """

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7


# As nova/virt/libvirt/driver.py's LIBVIRT_POWER_STATE, except that Kubenova has no SUSPENDED
# power state: a guest suspended to RAM by its own power management keeps its memory but runs no
# instructions, which is what PAUSED means to a user.
_FROM_LIBVIRT: dict[int, PowerState] = {
    LibvirtDomainState.NOSTATE: PowerState.NOSTATE,
    LibvirtDomainState.RUNNING: PowerState.RUNNING,
    # BLOCKED means "running, but waiting on a resource right now": still running to a user.
    LibvirtDomainState.BLOCKED: PowerState.RUNNING,
    LibvirtDomainState.PAUSED: PowerState.PAUSED,
    # SHUTDOWN is "being shut down": the guest is going away, and Nova reports it as shut down.
    LibvirtDomainState.SHUTDOWN: PowerState.SHUTDOWN,
    LibvirtDomainState.SHUTOFF: PowerState.SHUTDOWN,
    LibvirtDomainState.CRASHED: PowerState.CRASHED,
    LibvirtDomainState.PMSUSPENDED: PowerState.PAUSED,
}


def from_libvirt(state: int) -> PowerState:
    """Map a libvirt domain state to a power state; a state newer than this code is NOSTATE."""
    return _FROM_LIBVIRT.get(state, PowerState.NOSTATE)
