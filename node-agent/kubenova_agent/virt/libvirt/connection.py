"""The hypervisor adapter: the only module of the agent that imports ``libvirt``.

Everything else talks to libvirt through :class:`Connection` and :class:`Domain`, which give a
small typed surface, turn ``libvirt.libvirtError`` into
:class:`~kubenova_agent.exceptions.HypervisorError` (carrying libvirt's error code) and reopen a
connection that libvirtd dropped (a restarted daemon must not take the agent down with it).

Domain lifecycle events: :func:`start_event_loop` registers libvirt's default event loop and
runs it on a daemon thread; a connection opened after that delivers the events
:meth:`Connection.watch_lifecycle` asks for (and asks again after each reconnect). Callbacks run
on that thread, which also carries the connections' keepalives, so they must return at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import libvirt_qemu

from kubenova_agent import exceptions

LOG = logging.getLogger(__name__)

# Error codes the drivers act on (``virErrorNumber``).
ERR_NO_DOMAIN: int = libvirt.VIR_ERR_NO_DOMAIN
ERR_OPERATION_INVALID: int = libvirt.VIR_ERR_OPERATION_INVALID
ERR_NO_DOMAIN_METADATA: int = libvirt.VIR_ERR_NO_DOMAIN_METADATA
ERR_NO_NETWORK: int = libvirt.VIR_ERR_NO_NETWORK
ERR_NO_STORAGE_POOL: int = libvirt.VIR_ERR_NO_STORAGE_POOL
ERR_NO_STORAGE_VOL: int = libvirt.VIR_ERR_NO_STORAGE_VOL
#: ``virStoragePoolCreateXML``'s flag that makes a pool's directory first.
POOL_CREATE_WITH_BUILD: int = libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD

# A live migration without shared storage (see virt/libvirt/migration.py), and its parameters.
MIGRATE_LIVE_NON_SHARED: int = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    | libvirt.VIR_MIGRATE_NON_SHARED_DISK
)
MIGRATE_PARAM_DEST_XML: str = libvirt.VIR_MIGRATE_PARAM_DEST_XML
MIGRATE_PARAM_MIGRATE_DISKS: str = libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS

# What undefine removes besides the definition. The QEMU driver knows all four; libvirt's test
# driver refuses NVRAM and CHECKPOINTS_METADATA, so drivers choose.
UNDEFINE_MANAGED_SAVE: int = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
UNDEFINE_SNAPSHOTS_METADATA: int = libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
UNDEFINE_NVRAM: int = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
UNDEFINE_CHECKPOINTS_METADATA: int = libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA


#: ``virDomainEventType``: what a lifecycle event says happened, by name (for logs).
LIFECYCLE_EVENT_NAMES: dict[int, str] = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}

#: Called with (domain uuid, ``virDomainEventType``, its detail) on libvirt's event thread.
LifecycleCallback = Callable[[str, int, int], None]

_event_loop_lock = threading.Lock()
_event_loop_started = False


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it on a daemon thread; idempotent.

    Process-wide, and only connections opened afterwards use it: call it before opening the
    connections that should deliver events. It also makes remote connections send keepalives,
    so a libvirtd that stops answering is noticed even while nothing is asked of it.
    """
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        with _translated():
            libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:
            # Never seen in practice; the loop must outlive it, or events stop for good.
            LOG.exception("libvirt's event loop failed; running it again in a second")
            time.sleep(1.0)


def _ignore_error(_context: object, _error: object) -> None:
    """libvirt's default handler prints every error to stderr, even the ones we expect
    (a lookup of an unknown uuid); errors reach us as exceptions and are logged there."""


libvirt.registerErrorHandler(_ignore_error, None)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise libvirt's errors as HypervisorError (``translated`` for the adapter's helpers,
    such as ``storage``, that call the connection's handle)."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        raise exceptions.HypervisorError(
            str(exc.get_error_message() or exc), code=int(code) if code is not None else -1
        ) from exc


translated = _translated


def version_string(encoded: int) -> str:
    """libvirt encodes versions as ``major * 1_000_000 + minor * 1_000 + release``."""
    major, rest = divmod(int(encoded), 1_000_000)
    minor, release = divmod(rest, 1_000)
    return f"{major}.{minor}.{release}"


class Domain:
    """One libvirt domain."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    @property
    def uuid(self) -> str:
        with _translated():
            return str(self._handle.UUIDString())

    @property
    def name(self) -> str:
        with _translated():
            return str(self._handle.name())

    @property
    def runtime_id(self) -> int:
        """libvirt's id of the running domain: -1 while it is shut off, a new one at each start.

        Read from the handle (the remote driver does not ask libvirtd), so it is a cheap way to
        tell that a domain was started, stopped or redefined since it was last looked at.
        """
        with _translated():
            return int(self._handle.ID())

    def state(self) -> int:
        """The ``virDomainState`` the domain is in."""
        with _translated():
            return int(self._handle.state()[0])

    def is_active(self) -> bool:
        with _translated():
            return bool(self._handle.isActive())

    def start(self) -> None:
        """Start a shut-off domain; one with a managed-save image is restored from it."""
        with _translated():
            self._handle.create()

    def set_live_cpu_shares(self, shares: int) -> None:
        """Set the running domain's CPU weight (its cgroup's ``cpu.shares``, or ``cpu.weight``
        under cgroup v2) until it stops; what it is defined with is left alone."""
        with _translated():
            self._handle.setSchedulerParametersFlags(
                {libvirt.VIR_DOMAIN_SCHEDULER_CPU_SHARES: shares}, libvirt.VIR_DOMAIN_AFFECT_LIVE
            )

    def shutdown(self) -> None:
        """Press the ACPI power button: ask the guest to shut down. Returns at once; the guest
        may take its time, or ignore it."""
        with _translated():
            self._handle.shutdown()

    def pause(self) -> None:
        """Stop running the guest's vCPUs, keeping its memory (libvirt's ``suspend``)."""
        with _translated():
            self._handle.suspend()

    def unpause(self) -> None:
        """Run a paused guest's vCPUs again (libvirt's ``resume``)."""
        with _translated():
            self._handle.resume()

    def managed_save(self) -> None:
        """Save the guest's memory and device state to a file libvirt manages, then stop it;
        the next :meth:`start` restores it."""
        with _translated():
            self._handle.managedSave(0)

    def has_managed_save_image(self) -> bool:
        with _translated():
            return bool(self._handle.hasManagedSaveImage(0))

    def remove_managed_save_image(self) -> None:
        """Discard the managed-save image: the next start boots the guest afresh."""
        with _translated():
            self._handle.managedSaveRemove(0)

    def destroy(self) -> None:
        """Power the domain off at once; a domain that is not running is left as it is."""
        try:
            with _translated():
                self._handle.destroy()
        except exceptions.HypervisorError as exc:
            # It stopped between our look and the call: the effect wanted is already there.
            if exc.code != ERR_OPERATION_INVALID:
                raise

    def undefine(self, flags: int) -> None:
        with _translated():
            self._handle.undefineFlags(flags)

    def metadata_element(self, namespace: str) -> str | None:
        """The domain's ``<metadata>`` element in ``namespace`` as XML text, or None."""
        try:
            with _translated():
                return str(self._handle.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace, 0))
        except exceptions.HypervisorError as exc:
            if exc.code == ERR_NO_DOMAIN_METADATA:
                return None
            raise

    def lease_ipv4_addresses(self) -> list[str]:
        """IPv4 addresses the guest holds a DHCP lease for; [] when it is not running."""
        try:
            with _translated():
                interfaces = self._handle.interfaceAddresses(
                    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0
                )
        except exceptions.HypervisorError as exc:
            if exc.code == ERR_OPERATION_INVALID:
                return []
            raise
        addresses: list[str] = []
        for interface in (interfaces or {}).values():
            for address in interface.get("addrs") or []:
                if address.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and address.get("addr"):
                    addresses.append(str(address["addr"]))
        return addresses

    def qemu_monitor_command(self, command: str) -> str:
        """Send one QMP command (JSON) to the running domain's QEMU and return its answer.
        libvirt marks the domain tainted ("custom-monitor") in its log: only for what libvirt
        has no API for."""
        with _translated():
            return str(libvirt_qemu.qemuMonitorCommand(self._handle, command, 0))

    def xml_desc(self, *, migratable: bool = False) -> str:
        """The domain's XML; ``migratable`` gives it as another host should define it, with
        its secrets (SPICE's password), which would otherwise be left out and the guest would
        arrive without them."""
        flags = (
            libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE if migratable else 0
        )
        with _translated():
            return str(self._handle.XMLDesc(flags))

    def migrate(self, destination: Connection, params: dict[str, Any], flags: int) -> None:
        """Migrate to ``destination``, with this process driving libvirt's protocol between
        the two daemons (``virDomainMigrate3``); returns once the guest runs there."""
        with _translated():
            self._handle.migrate3(destination.handle(), params, flags)

    def job_stats(self, *, completed: bool = False) -> dict[str, Any]:
        """The statistics of the domain's running job (or of its last completed one)."""
        flags = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED if completed else 0
        with _translated():
            return dict(self._handle.jobStats(flags))

    def abort_job(self) -> None:
        with _translated():
            self._handle.abortJob()


class NodeInfo:
    """The host facts ``virNodeGetInfo`` gives."""

    def __init__(self, raw: Any) -> None:
        self.cpu_arch = str(raw[0])
        self.memory_mib = int(raw[1])
        self.cpus = int(raw[2])


class Connection:
    """A connection to one libvirt URI, opened on first use and reopened when it dies."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._handle: Any = None
        self._lock = threading.Lock()
        self._lifecycle: LifecycleCallback | None = None
        self._lifecycle_id: int | None = None

    def _conn(self) -> Any:
        with self._lock:
            if self._handle is not None:
                try:
                    alive = bool(self._handle.isAlive())
                except libvirt.libvirtError:
                    alive = False
                if alive:
                    return self._handle
                LOG.warning("connection to %s lost; reconnecting", self.uri)
                self._close_locked()
            with _translated():
                self._handle = libvirt.open(self.uri)
            # A callback registration belongs to the connection it was made on.
            self._watch_locked()
            return self._handle

    def open(self) -> None:
        """Connect now rather than on first use, so that a bad URI fails early."""
        self._conn()

    def handle(self) -> Any:
        """The libvirt connection itself, for :meth:`Domain.migrate` and the adapter's
        ``storage`` helpers only."""
        return self._conn()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._handle is not None:
            self._unwatch_locked()
            with contextlib.suppress(libvirt.libvirtError):
                self._handle.close()
            self._handle = None

    def watch_lifecycle(self, callback: LifecycleCallback | None) -> bool:
        """Have ``callback`` called for every lifecycle event of any domain on this
        connection (started, suspended, resumed, stopped, shut down, crashed...); None stops.

        The callback runs on libvirt's event thread (see :func:`start_event_loop`, which must
        have been called before the connection opened) and must return at once, without calling
        libvirt. The registration is made again whenever the connection is reopened, so events
        resume once a restarted libvirtd has been reconnected to (by the next call that needs
        the connection). Returns False when the hypervisor refuses to deliver events (logged);
        before the connection is opened, True: it registers when it opens.
        """
        with self._lock:
            self._lifecycle = callback
            if self._handle is None:
                return callback is not None
            self._unwatch_locked()
            return self._watch_locked()

    def _watch_locked(self) -> bool:
        if self._lifecycle is None or self._handle is None:
            return False
        try:
            self._lifecycle_id = int(
                self._handle.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                )
            )
        except libvirt.libvirtError as exc:
            LOG.warning("%s delivers no domain lifecycle events: %s", self.uri, exc)
            return False
        return True

    def _unwatch_locked(self) -> None:
        if self._lifecycle_id is not None and self._handle is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._handle.domainEventDeregisterAny(self._lifecycle_id)
        self._lifecycle_id = None

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        callback = self._lifecycle
        if callback is None:
            return
        try:
            # Read from the handle libvirt passed in: no call to the hypervisor.
            domain_uuid = str(dom.UUIDString())
            callback(domain_uuid, int(event), int(detail))
        except Exception:
            # An exception must not unwind into libvirt's event loop.
            LOG.exception("lifecycle event callback failed")

    def define_domain(self, xml: str) -> Domain:
        with _translated():
            return Domain(self._conn().defineXML(xml))

    def create_transient_domain(self, xml: str) -> Domain:
        """Start a domain that has no definition: it is gone once it stops.

        libvirtd also destroys it when this connection closes (``AUTODESTROY``), so a process
        that dies while the domain runs leaves nothing behind. libvirt's test driver refuses
        that flag.
        """
        with _translated():
            return Domain(self._conn().createXML(xml, libvirt.VIR_DOMAIN_START_AUTODESTROY))

    def lookup_by_uuid(self, uuid: str) -> Domain | None:
        try:
            with _translated():
                return Domain(self._conn().lookupByUUIDString(uuid))
        except exceptions.HypervisorError as exc:
            if exc.code == ERR_NO_DOMAIN:
                return None
            raise

    def list_domains(self) -> list[Domain]:
        """All domains, running or not."""
        with _translated():
            return [Domain(handle) for handle in self._conn().listAllDomains(0)]

    def managed_save_uuids(self) -> set[str]:
        """The uuids of every domain that has a managed-save image, in one call."""
        with _translated():
            handles = self._conn().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)
            return {str(handle.UUIDString()) for handle in handles}

    def node_info(self) -> NodeInfo:
        with _translated():
            return NodeInfo(self._conn().getInfo())

    def hypervisor_type(self) -> str:
        """``"QEMU"`` for qemu:///system, ``"TEST"`` for test:///default."""
        with _translated():
            return str(self._conn().getType())

    def hypervisor_version(self) -> str:
        with _translated():
            return version_string(self._conn().getVersion())

    def library_version(self) -> str:
        with _translated():
            return version_string(self._conn().getLibVersion())

    def network_is_active(self, name: str) -> bool | None:
        """Whether the virtual network ``name`` is up; None when it is not defined."""
        try:
            with _translated():
                return bool(self._conn().networkLookupByName(name).isActive())
        except exceptions.HypervisorError as exc:
            if exc.code == ERR_NO_NETWORK:
                return None
            raise
