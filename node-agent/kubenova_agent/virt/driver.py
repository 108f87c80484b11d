"""The virt driver boundary: what the node-agent's manager asks of a hypervisor.

This is Kubenova's ``nova/virt/driver.py``. :class:`ComputeDriver` states the contract every
driver honours; ``kubenova_agent.virt.libvirt.driver.LibvirtDriver`` drives libvirt/QEMU, and
``kubenova_agent.virt.testdriver.TestDriver`` runs the same logic on libvirt's in-memory
``test:///default`` hypervisor for simulated hosts. One contract test suite
(tests/integration/virt/test_driver_contract.py) runs against both.

The value types that cross the boundary are defined in :mod:`kubenova_agent.virt.values` and
re-exported here, so a caller of the driver needs this module alone.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from kubenova_agent import exceptions
from kubenova_agent.virt import migration, power_state
from kubenova_agent.virt.values import (
    DISK_FORMATS,
    USER_DATA_MAX_BYTES,
    ConsolePorts,
    HostInfo,
    ImageRef,
    InstanceSpec,
    InstanceState,
    RebootType,
    domain_name,
    validate_uuid,
)

__all__ = [
    "DISK_FORMATS",
    "USER_DATA_MAX_BYTES",
    "ComputeDriver",
    "ConsolePorts",
    "HostInfo",
    "ImageRef",
    "InstanceSpec",
    "InstanceState",
    "LifecycleListener",
    "RebootType",
    "domain_name",
    "validate_uuid",
]

#: Called with an instance uuid when the hypervisor reports a change in its lifecycle.
LifecycleListener = Callable[[str], None]


class ComputeDriver(migration.MigrationDriver):
    """The contract between the node-agent's manager and a hypervisor (with its migration
    methods, :class:`~kubenova_agent.virt.migration.MigrationDriver`).

    Every method may be called from any thread; a driver serialises the calls that concern one
    instance. Methods that take an instance uuid raise ``ValueError`` when it is not a uuid in
    canonical form. Only instances whose domain a driver for this host name created are
    visible through it: other domains on the same libvirt (made by hand, or by a driver for
    another host name) are neither listed nor touched.
    """

    @abc.abstractmethod
    def init_host(self) -> None:
        """Prepare the host; called once before any other method.

        Connects to the hypervisor, creates the directories the driver keeps files in and
        decides how guests will run. The libvirt driver uses the virt type it was given
        ("kvm" or "qemu"); for "auto" it probes whether KVM really executes a guest, with a
        QEMU of its own if it has one, else by asking libvirtd whether it can run KVM guests,
        and otherwise uses software emulation. Raises
        :class:`~kubenova_agent.exceptions.HypervisorError` when the hypervisor cannot be
        reached; the agent should not start serving then.
        """

    @abc.abstractmethod
    def get_host_info(self) -> HostInfo:
        """Return the host's capacity and hypervisor versions (see :class:`HostInfo`).

        Capacity is the whole host's, not what is free: the scheduler subtracts its claims.
        """

    @abc.abstractmethod
    def spawn(self, instance: InstanceSpec) -> None:
        """Build and start ``instance``; return once its domain is running.

        Steps: fetch the image into the image cache (used only after its sha256 matches), make
        the root disk as a qcow2 overlay on the cached image sized to ``disk_gib``, write a
        config drive (uuid, hostname, name, SSH keys, user-data), define the domain (domain
        uuid = ``instance.uuid``, name ``instance-<uuid>``) and start it.

        Idempotent: when the domain already exists and runs, nothing is done; when it exists but
        is shut off, it is started. This is what makes a redelivered build message harmless.
        (Should that start fail, the domain and its files are removed as below: only a spawn
        of this instance can have made them.)

        A failed spawn removes everything it made (the domain, the instance's files) before it
        raises:

        - :class:`~kubenova_agent.exceptions.BuildAbortedError` when the request itself is bad
          and no host could do better: the image's checksum does not match, the image cannot be
          found (HTTP 4xx), is not in its declared format, has a backing file of its own, or is
          bigger than the flavor's disk.
        - :class:`~kubenova_agent.exceptions.RescheduledBuildError` for host-side failures: a
          libvirt or qemu error, a full disk, an image server that does not answer. Another
          host may succeed.
        """

    @abc.abstractmethod
    def destroy(self, instance_uuid: str) -> None:
        """Power off and delete the instance: the domain (with any managed save image, NVRAM,
        snapshot and checkpoint metadata) and all of its files on this host.

        Idempotent: destroying an unknown or already destroyed instance succeeds. Raises
        :class:`~kubenova_agent.exceptions.HypervisorError` when libvirt refuses (the instance
        may then be half deleted; calling again finishes the job).
        """

    # -- power operations -------------------------------------------------------------------
    #
    # Each raises InstanceNotFound for an instance the driver does not have, is serialised
    # with every other call that changes the same instance, and returns once its effect is in
    # place. Each is idempotent: the agent acknowledges a message only after its effect, so a
    # message may be delivered again, and doing it again must do no harm. Errors from the
    # hypervisor are raised as HypervisorError.

    @abc.abstractmethod
    def power_off(self, instance_uuid: str, timeout_s: float) -> bool:
        """Stop the instance; return whether the guest shut down by itself.

        A running guest is asked to shut down (the ACPI power button; asked again every 10 s,
        as Nova does, for a guest that missed it), and given up to ``timeout_s`` seconds to
        reach shut off; then, or at once when ``timeout_s`` is 0, it is powered off. A paused
        guest cannot answer, so it is powered off at once. A suspended instance's saved memory
        is discarded, so that it ends stopped. An instance already stopped is left as it is
        (and True is returned: nothing was forced).
        """

    @abc.abstractmethod
    def power_on(self, instance_uuid: str) -> None:
        """Start a stopped instance; a suspended one is restored from its saved memory (as
        :meth:`resume`). An instance that runs already, or is paused, is left as it is."""

    @abc.abstractmethod
    def pause(self, instance_uuid: str) -> None:
        """Stop running the guest's vCPUs; its memory stays in the host's RAM.

        A paused instance is left as it is. Raises
        :class:`~kubenova_agent.exceptions.InstanceInvalidState` for one that is not running
        (stopped or suspended).
        """

    @abc.abstractmethod
    def unpause(self, instance_uuid: str) -> None:
        """Run a paused guest's vCPUs again.

        A running instance is left as it is. Raises
        :class:`~kubenova_agent.exceptions.InstanceInvalidState` for one that is stopped or
        suspended.
        """

    @abc.abstractmethod
    def suspend(self, instance_uuid: str) -> None:
        """Save the guest's memory and device state to disk and stop it, freeing its RAM
        (libvirt's managed save, as Nova's libvirt suspend does). Running or paused instances
        can be suspended; the state reads SHUTDOWN with ``saved`` set afterwards.

        A suspended instance is left as it is. Raises
        :class:`~kubenova_agent.exceptions.InstanceInvalidState` for a stopped one.
        """

    @abc.abstractmethod
    def resume(self, instance_uuid: str) -> None:
        """Restore a suspended instance from its saved state; it runs afterwards, even when it
        was paused when it was suspended.

        A running instance is left as it is. Raises
        :class:`~kubenova_agent.exceptions.InstanceInvalidState` for one that is stopped or
        paused (unpause a paused one).
        """

    @abc.abstractmethod
    def reboot(self, instance_uuid: str, hard: bool, timeout_s: float) -> RebootType:
        """Reboot the instance; return how it was done.

        Soft (``hard`` False), as Nova's ``_soft_reboot``: a running guest is asked to shut
        down (ACPI power button) and given up to ``timeout_s`` seconds to reach shut off; then
        it is started again. A guest that does not shut down in time, or an instance that is
        not running (paused, stopped, suspended), or a ``timeout_s`` of 0, gets a hard reboot
        instead.

        Hard: the domain is powered off, whatever the guest is doing, and started again. This
        also starts a stopped, paused or suspended instance; a suspended one's saved memory is
        discarded first, so it boots afresh, as Nova's hard reboot does.

        Not idempotent in the strict sense: a message delivered twice reboots twice, which a
        guest survives as it survives one reboot.
        """

    # -- rebuild ---------------------------------------------------------------------------

    @abc.abstractmethod
    def rebuild(self, instance: InstanceSpec, power_on: bool) -> None:
        """Rebuild the instance where it is (Nova's ``rebuild_instance``): a new root disk
        from ``instance.image`` and a new config drive from ``instance``. Kept: the domain (uuid,
        name), the NIC's MAC address (so libvirt's DHCP gives the guest its address again) and
        the console log, which the new boot appends to.

        Steps: make the new disk and config drive beside the old ones, as :meth:`spawn` makes
        them (image fetched and verified, overlay sized to ``disk_gib``), while the old guest
        still runs; then power the domain off at once (its disk is about to go: the guest is
        not asked), drop any managed-save image, put the new files in place of the old, define
        the domain again and start it, or, with ``power_on`` False, leave it shut off (Nova
        keeps a stopped instance stopped through a rebuild). Any state may be rebuilt.

        Raises InstanceNotFound for an instance the driver does not have, and
        :class:`~kubenova_agent.exceptions.RebuildFailed` otherwise, in one of two end states:

        - ``intact``: the failure came before the old guest was powered off (a bad image:
          checksum, HTTP 404, format, too big; or no room for the new files). The new files
          are removed and the instance is as it was, on its old disk.
        - not ``intact``: the hypervisor failed afterwards (the define or the start). The
          instance is left shut off, in error until a rebuild succeeds.

        Doing it again (a redelivered message) rebuilds again: the same end state as one
        rebuild (a fresh disk from the same image, the same config drive and power state).
        """

    # -- snapshot --------------------------------------------------------------------------

    @abc.abstractmethod
    def snapshot(self, instance_uuid: str, target: str) -> None:
        """Write an image of the instance's root disk as it is now to ``target``, a path that
        must not exist yet (its directory must): a standalone qcow2 (no backing file) of the
        disk's virtual size, which an instance can boot from (Nova's ``snapshot``).

        The copy is consistent: taken at one instant of the guest's life, with everything the
        guest had written to its disk by then (what it holds in its own caches is not there,
        as after a power cut). A running guest is paused for the moment of the copy and runs
        again afterwards, whether the snapshot worked or not; a paused, stopped or suspended
        instance stays as it is. Any state but a crashed one may be snapshotted.

        Raises InstanceNotFound for an instance the driver does not have, and
        :class:`~kubenova_agent.exceptions.SnapshotFailed` when the copy cannot be made; then
        nothing is left at ``target``. Doing it again makes another copy of the disk as it is
        then.
        """

    def set_lifecycle_listener(self, listener: LifecycleListener | None) -> bool:
        """Have ``listener(instance_uuid)`` called whenever the hypervisor reports that an
        instance's lifecycle changed (started, paused, resumed, shut down, crashed...),
        including changes the guest makes itself; None stops it. Returns whether events will
        be delivered.

        The listener runs on the hypervisor's event thread: it must return at once (hand the
        uuid over to another thread) and must not call the driver. The uuid may be of a domain
        the driver does not manage; :meth:`get_instance_state` then raises InstanceNotFound.
        Events may be repeated or coalesced, and are lost while the hypervisor is unreachable,
        so the agent's periodic sync stays as the backstop. The default delivers none.
        """
        del listener
        return False

    @abc.abstractmethod
    def get_power_state(self, instance_uuid: str) -> power_state.PowerState:
        """Return what the hypervisor says the instance is doing right now.

        Raises :class:`~kubenova_agent.exceptions.InstanceNotFound` when there is no such
        domain.
        """

    @abc.abstractmethod
    def get_addresses(self, instance_uuid: str) -> list[str]:
        """Return the instance's IPv4 addresses from its DHCP leases, sorted.

        ``[]`` while the guest has no lease yet or is not running. Raises
        :class:`~kubenova_agent.exceptions.InstanceNotFound` when there is no such domain.
        """

    @abc.abstractmethod
    def list_instance_uuids(self) -> list[str]:
        """Return the uuids of the instances this driver manages on this host, sorted.

        Running or not. The agent's audit compares this list with the control plane's records
        to find leftovers (a domain with no record) and lost instances.
        """

    @abc.abstractmethod
    def console_log_path(self, instance_uuid: str) -> str | None:
        """Return the path of the file holding the instance's serial console output.

        ``None`` when the driver keeps no such file (the TestDriver) or the guest has not
        written one yet. Raises :class:`~kubenova_agent.exceptions.InstanceNotFound` when there
        is no such domain.
        """

    def reload_console_certificates(self) -> int:
        """Make the running guests' consoles serve the host's console certificate as it is now
        in the console TLS directory, after a renewal: a guest reads it when it starts, and
        would otherwise serve the old one until it stops. Returns how many guests took it up.

        Best effort: a guest that cannot (its consoles have no TLS, it stopped meanwhile) is
        skipped. Drivers whose guests have no TLS consoles take none, the default.
        """
        return 0

    # -- derived from the methods above; drivers may override them to ask less often --------

    def get_instance_state(self, instance_uuid: str) -> InstanceState:
        """Return the instance's power state, addresses and whether it is suspended.

        The same answers as :meth:`get_power_state` and :meth:`get_addresses`, and the same
        errors (``InstanceNotFound``, ``ValueError``). This default knows nothing of
        suspension (``saved`` False); the libvirt drivers override it, finding the domain once
        for all three.
        """
        return InstanceState(
            power_state=self.get_power_state(instance_uuid),
            addresses=tuple(self.get_addresses(instance_uuid)),
        )

    def list_instance_states(self) -> dict[str, InstanceState]:
        """Return :meth:`get_instance_state` of every instance :meth:`list_instance_uuids`
        lists, keyed by uuid in sorted order.

        An instance that disappears while the host is being listed is left out. This is what
        the agent's periodic power-state sync calls, every few seconds for every instance, so
        a driver overrides it when one listing of the hypervisor can answer for all of them.
        """
        states: dict[str, InstanceState] = {}
        for instance_uuid in self.list_instance_uuids():
            try:
                states[instance_uuid] = self.get_instance_state(instance_uuid)
            except exceptions.InstanceNotFound:
                continue
        return states
