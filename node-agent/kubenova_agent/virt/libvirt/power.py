"""Power operations on one libvirt domain: the steps behind the driver's power_off, power_on,
pause, unpause, suspend, resume and reboot (and the power-off that begins a rebuild).

Functions of a :class:`~kubenova_agent.virt.libvirt.connection.Domain`, so that
``BaseLibvirtDriver`` only finds the domain, holds the instance's lock and translates a vanished
domain into ``InstanceNotFound``. Each one looks at the domain's state first and does only what
is still missing, which is what makes a redelivered message harmless.

Two seams come from the driver: ``ask`` presses the guest's ACPI power button (the TestDriver
can make a simulated guest ignore it) and ``start`` starts a domain (the TestDriver can make
starts fail like a broken host's).

Suspend is libvirt's managed save, as Nova's libvirt driver does it: memory and device state go
to a file libvirt keeps, the domain shuts off, and the next start restores it. A guest that was
paused when it was saved comes back paused on QEMU (the test hypervisor restores it running),
so whatever restores it unpauses it afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kubenova_agent import exceptions
from kubenova_agent.virt import driver
from kubenova_agent.virt.libvirt import connection
from kubenova_agent.virt.power_state import LibvirtDomainState

LOG = logging.getLogger(__name__)

#: How often a domain is looked at while waiting for its guest to shut down: the wait ends
#: within this of the guest powering off.
POLL_INTERVAL_S = 0.1
#: How often the power button is pressed again while waiting: a guest may miss the first
#: press while it boots or is busy (Nova's SHUTDOWN_RETRY_INTERVAL).
SHUTDOWN_RETRY_INTERVAL_S = 10.0

#: How long a start waits for a domain whose guest is shutting down to be off: QEMU takes a
#: second or two to exit after the guest powers off, and a start in between would find the
#: domain still running and do nothing.
SHUTDOWN_SETTLE_S = 30.0

#: States in which a guest runs instructions, so it can answer the power button.
_RUNNING = frozenset({LibvirtDomainState.RUNNING, LibvirtDomainState.BLOCKED})
#: States in which a guest's vCPUs are stopped but its memory is in RAM.
_PAUSED = frozenset({LibvirtDomainState.PAUSED, LibvirtDomainState.PMSUSPENDED})

Ask = Callable[[connection.Domain], None]
Start = Callable[[connection.Domain], None]


def describe(domain: connection.Domain) -> str:
    """What the domain is, in the words of vm_state: running, paused, stopped, suspended..."""
    state = domain.state()
    if state in _RUNNING:
        return "running"
    if state in _PAUSED:
        return "paused"
    if state == LibvirtDomainState.SHUTDOWN:
        return "shutting down"
    if state == LibvirtDomainState.CRASHED:
        return "crashed"
    return "suspended" if domain.has_managed_save_image() else "stopped"


def shut_down(domain: connection.Domain, timeout_s: float, ask: Ask) -> bool:
    """Press the power button and wait up to ``timeout_s`` for the domain to shut off.

    Returns whether it did. The button is pressed again every
    :data:`SHUTDOWN_RETRY_INTERVAL_S` while the wait lasts.
    """
    deadline = time.monotonic() + timeout_s
    next_press = time.monotonic()
    while True:
        if not domain.is_active():
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_press:
            try:
                ask(domain)
            except exceptions.HypervisorError:
                # It shut off between our look and the press: what we were waiting for.
                if not domain.is_active():
                    return True
                raise
            next_press = now + SHUTDOWN_RETRY_INTERVAL_S
        time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def power_off(domain: connection.Domain, timeout_s: float, ask: Ask) -> bool:
    """See ``ComputeDriver.power_off``."""
    if not domain.is_active():
        if domain.has_managed_save_image():
            # A suspended instance asked to stop: its saved memory is what keeps it from
            # being stopped.
            domain.remove_managed_save_image()
            return False
        return True
    # A paused guest runs no instructions, so it could not answer the button.
    if timeout_s > 0 and domain.state() not in _PAUSED and shut_down(domain, timeout_s, ask):
        return True
    domain.destroy()
    return False


def power_on(domain: connection.Domain, start: Start) -> None:
    """See ``ComputeDriver.power_on``."""
    if domain.is_active() and domain.state() == LibvirtDomainState.SHUTDOWN:
        # The guest powered itself off a moment ago (the report of that is what asked for
        # this start): wait for QEMU to exit, then start it.
        deadline = time.monotonic() + SHUTDOWN_SETTLE_S
        while domain.is_active() and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
    if domain.is_active():
        return
    _start_running(domain, start)


def pause(domain: connection.Domain, instance_uuid: str) -> None:
    """See ``ComputeDriver.pause``."""
    state = domain.state()
    if state in _PAUSED:
        return
    if state not in _RUNNING:
        raise exceptions.InstanceInvalidState(instance_uuid, "pause", describe(domain))
    domain.pause()


def unpause(domain: connection.Domain, instance_uuid: str) -> None:
    """See ``ComputeDriver.unpause``."""
    state = domain.state()
    if state in _RUNNING:
        return
    if state not in _PAUSED:
        raise exceptions.InstanceInvalidState(instance_uuid, "unpause", describe(domain))
    domain.unpause()


def suspend(domain: connection.Domain, instance_uuid: str) -> None:
    """See ``ComputeDriver.suspend``."""
    state = domain.state()
    if state in _RUNNING or state in _PAUSED:
        domain.managed_save()
        return
    if not domain.is_active() and domain.has_managed_save_image():
        return
    raise exceptions.InstanceInvalidState(instance_uuid, "suspend", describe(domain))


def resume(domain: connection.Domain, instance_uuid: str, start: Start) -> None:
    """See ``ComputeDriver.resume``."""
    state = domain.state()
    if state in _RUNNING:
        return
    if state in _PAUSED:
        # Left so by a resume that restored a guest saved while paused and was interrupted
        # before running it: finish that resume.
        domain.unpause()
        return
    if domain.is_active() or not domain.has_managed_save_image():
        raise exceptions.InstanceInvalidState(instance_uuid, "resume", describe(domain))
    _start_running(domain, start)


def reboot(
    domain: connection.Domain, hard: bool, timeout_s: float, ask: Ask, start: Start
) -> driver.RebootType:
    """See ``ComputeDriver.reboot``."""
    if not hard and timeout_s > 0 and domain.state() in _RUNNING:
        if shut_down(domain, timeout_s, ask):
            start(domain)
            return driver.RebootType.SOFT
        LOG.warning(
            "domain %s did not shut down within %s s; rebooting it hard", domain.name, timeout_s
        )
    # A hard reboot boots afresh: saved memory would otherwise be restored.
    stop_afresh(domain)
    start(domain)
    return driver.RebootType.HARD


def stop_afresh(domain: connection.Domain) -> None:
    """Power the domain off at once, whatever the guest is doing, and drop any managed-save
    image, so that its next start boots the guest afresh."""
    if domain.is_active():
        domain.destroy()
    elif domain.has_managed_save_image():
        domain.remove_managed_save_image()


def _start_running(domain: connection.Domain, start: Start) -> None:
    start(domain)
    if domain.state() in _PAUSED:
        domain.unpause()
