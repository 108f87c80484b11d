"""Starting guests first: once a guest has started, its CPU weight is lowered to the least.

Under libvirt's cgroups every guest's QEMU is a group of its own under ``machine``, and the
kernel divides the CPU among those groups by weight, whatever the priority of the threads in
them (a vCPU thread's scheduling policy counts only against its own group's threads). A guest
being started, whose QEMU must set itself up and answer libvirt before the start returns, gets
1/N of what is left while N other guests boot or work: on a 2-core host with 50 guests booting
under TCG, libvirt took 12-16 s to start a domain with no devices, and under 2 s once the
running guests' weight was lowered (docs/benchmarks.md, the density benchmark).

So once a domain has started, its weight is set to :data:`RUNNING_GUEST_CPU_SHARES`, the floor
of cgroup v1's ``cpu.shares``, and within v2's ``cpu.weight``; a domain being started has
libvirt's default (1024, or 100 under v2) until its start returns. Running guests keep equal
weights among themselves, so they share the CPU as before and get all that no start needs.

The weight is set on the live domain only: each start goes through here again (a spawn, a power
on, a rebuild, a resize), and a live migration carries it, since libvirt's migratable XML holds
the live ``<cputune><shares>``. A host without the cgroup CPU controller refuses it; the guest
still runs, at the default weight, and that is logged once per driver.
"""

from __future__ import annotations

import logging

from kubenova_agent import exceptions
from kubenova_agent.virt.libvirt import connection

LOG = logging.getLogger(__name__)

#: The weight of a guest once started (cgroup v1's minimum ``cpu.shares``).
RUNNING_GUEST_CPU_SHARES = 2


class StartPriority:
    """Lowers started domains' weight when ``enabled``; see the module docstring."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._refusal_logged = False

    def started(self, domain: connection.Domain) -> None:
        """Called once ``domain`` has started; never raises for libvirt's refusal."""
        if not self.enabled:
            return
        try:
            domain.set_live_cpu_shares(RUNNING_GUEST_CPU_SHARES)
        except exceptions.HypervisorError as exc:
            if not self._refusal_logged:
                self._refusal_logged = True
                LOG.warning(
                    "cannot lower the CPU weight of started guests (%s): guests being started "
                    "will share the CPU with running ones",
                    exc,
                )
